"""Overhead of `phoenix run` before ComfyUI starts, against starting ComfyUI directly.

Both paths launch the stand-in ComfyUI (tests/fixtures/fake_comfyui/main.py), which writes the
wall time at which its main.py began running. Measured per run:
  exec  = that time − the moment the launcher was spawned
  ready = the moment GET /system_stats first answered − the moment the launcher was spawned
`phoenix run --skip-apply` is the real CLI (manifest load, hardening, GPU facts, interpreter
probe, flag choice, cli_args check, health API, supervisor); nothing is applied.

Usage: python benchmarks/bench_run.py [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAKE = REPO / "tests" / "fixtures" / "fake_comfyui"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=1):
                return time.time()
        except OSError:
            time.sleep(0.005)
    raise RuntimeError("ComfyUI stand-in never answered")


def _timings(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
        data: dict[str, float] = json.loads(response.read())["timings_s"]
        return data


def _measure(direct: bool, work: Path) -> tuple[float, float, dict[str, float]]:
    checkout = work / "ComfyUI"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(FAKE, checkout)
    stamp = checkout / "bench_stamp"
    stamp.write_text("")
    root = work / "workspace"
    port, health = _port(), _port()
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "PYTHONPATH": str(REPO)}
    if direct:
        root.mkdir(parents=True)
        argv = [sys.executable, str(checkout / "main.py"), "--listen", "127.0.0.1",
                "--port", str(port), "--base-directory", str(root), "--cpu"]  # fmt: skip
    else:
        manifest = work / "manifest.yaml"
        manifest.write_text(
            "version: 1\n"
            f"comfyui: {{path: '{checkout}', listen: 127.0.0.1, port: {port}}}\n"
            f"services: {{filebrowser: {{enabled: false}}, health: {{port: {health}}}}}\n"
            "storage: {min_free_gb: 0}\n"
        )
        argv = [sys.executable, "-m", "provisioner", "run", "--skip-apply",
                "--manifest", str(manifest), "--root", str(root)]  # fmt: skip
    began = time.time()
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    timings: dict[str, float] = {}
    try:
        ready = _wait_ready(port)
        exec_at = float(stamp.read_text())
        if not direct:
            deadline = time.monotonic() + 5
            while "ready" not in timings and time.monotonic() < deadline:
                timings = _timings(health)
                time.sleep(0.02)
    finally:
        stop_began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
            if not direct:
                timings["stop_s"] = time.monotonic() - stop_began
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        if direct:
            pid_file = root / "output" / "fake_grandchild.pid"
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    return exec_at - began, ready - began, timings


def _time_cmd(argv: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def _spine_share(work: Path, runs: int) -> tuple[float, float]:
    """Median seconds of a bare interpreter, and of importing Phoenix + loading the manifest."""
    work.mkdir(parents=True, exist_ok=True)
    manifest = work / "manifest.yaml"
    manifest.write_text("version: 1\nstorage: {min_free_gb: 0}\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "PYTHONPATH": str(REPO)}
    load = (
        "import sys; from provisioner.cli import build_parser; build_parser(); "
        "from provisioner.manifest.merge import load_desired; load_desired(sys.argv[1], {})"
    )
    bare = [_time_cmd([sys.executable, "-c", "pass"], env) for _ in range(runs)]
    spine = [_time_cmd([sys.executable, "-c", load, str(manifest)], env) for _ in range(runs)]
    return statistics.median(bare), statistics.median(spine)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rows = {}
    inside: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="phoenix-bench-") as tmp:
        for label, direct in (("direct main.py", True), ("phoenix run", False)):
            samples = [_measure(direct, Path(tmp) / f"{label[:6]}{i}") for i in range(args.runs)]
            inside += [s[2] for s in samples if s[2]]
            rows[label] = (
                statistics.median(s[0] for s in samples),
                statistics.median(s[1] for s in samples),
                max(s[0] for s in samples),
            )
        bare, spine = _spine_share(Path(tmp) / "spine", args.runs)
    load = os.getloadavg()[0]
    print(
        f"runs per path: {args.runs}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
        f"load average {load:.1f}"
    )
    print(f"{'path':16} {'exec median':>12} {'exec max':>10} {'ready median':>13}")
    for label, (exec_s, ready_s, worst) in rows.items():
        print(f"{label:16} {exec_s:11.3f}s {worst:9.3f}s {ready_s:12.3f}s")
    overhead = rows["phoenix run"][0] - rows["direct main.py"][0]
    print(f"overhead of phoenix run before ComfyUI's exec: {overhead:.3f} s (target < 1 s)")
    loaded = statistics.median(t["loaded"] for t in inside)
    stop = statistics.median(t["stop_s"] for t in inside if "stop_s" in t)
    setup = statistics.median(t["launched"] - t["loaded"] for t in inside)
    print(
        f"  spine, measured alone: Python start {bare:.3f} s, Phoenix imports + manifest "
        f"load/validate {spine - bare:.3f} s"
    )
    print(
        f"  inside run_pod (from /status timings): manifest load {loaded:.3f} s, runtime "
        f"setup to spawn (hardening, plan, GPU facts, probe, flags, health API) {setup:.3f} s"
    )
    print(f"  SIGTERM to exit of phoenix run (stop services, cleanup): median {stop:.3f} s")
    return 0 if overhead < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())

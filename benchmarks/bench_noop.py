"""Benchmark (a): a no-op `phoenix apply` over 50 placed files (≥ 200 GB) vs `sha256sum` of them.

The files are sparse (``truncate``), so they take no disk space but read back as zeros at full
size. Their SHA256 is computed once per size with hashlib (real bytes: zeros) and recorded in the
state file through :class:`provisioner.state.store.StateStore` with the same ``file_record`` and
``request_key`` that ``apply`` records. Phoenix then trusts size + mtime_ns and does nothing;
``sha256sum`` must read every byte. When hashing everything would take longer than
``--max-baseline-s``, ``sha256sum`` runs on a subset and the total is extrapolated (printed).

Usage: ``python benchmarks/bench_noop.py [--files 50] [--size-gib 4] [--dir /tmp/x]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def zeros_sha256(size: int) -> str:
    """SHA256 of ``size`` zero bytes (what a sparse file of that size reads as)."""
    block = bytes(16 * 1024 * 1024)
    h = hashlib.sha256()
    left = size
    while left:
        n = min(left, len(block))
        h.update(block[:n] if n < len(block) else block)
        left -= n
    return h.hexdigest()


def setup(base: Path, files: int, size: int) -> tuple[Path, Path]:
    """Sparse files under models/checkpoints, a manifest naming them, and their state."""
    from provisioner.core.layout import Layout
    from provisioner.manifest.desired import request_key
    from provisioner.manifest.merge import load_desired
    from provisioner.state.store import ModelRecord, StateStore, file_record
    from tests.support.desired import with_comfyui

    root = base / "root"
    folder = root / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    digest = zeros_sha256(size)
    print(f"sha256 of {size / 2**30:.0f} GiB of zeros computed once in "
          f"{time.perf_counter() - t:.1f} s")  # fmt: skip
    lines = ["version: 1", "models:"]
    for i in range(files):
        name = f"bench-{i:02d}.safetensors"
        path = folder / name
        with path.open("wb") as fh:
            fh.truncate(size)
        # never contacted: the point is that a no-op apply makes no request at all
        lines += [f"  - url: http://127.0.0.1:9/{name}", f"    sha256: {digest}",
                  "    type: checkpoints"]  # fmt: skip
    manifest = base / "bench.yaml"
    # ComfyUI: a local stand-in checkout already at its pinned commit (the image's case)
    manifest.write_text(with_comfyui("\n".join(lines) + "\n"))
    desired, _ = load_desired(str(manifest), {})
    store = StateStore(Layout(root))
    for model in desired.models:
        assert model.filename is not None
        path = folder / model.filename
        record = file_record(root, path, digest)
        store.put_model(
            ModelRecord(model.id, "url", (record,),
                        {"request": request_key(model), "url": model.entry.url})  # type: ignore[union-attr]
        )  # fmt: skip
    return root, manifest


def time_python_pass(runs: int) -> list[float]:
    """Wall time of ``python -c pass``: the interpreter's own start-up on this machine."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - t)
    return times


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_apply_cli(root: Path, manifest: Path, runs: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGINGFACE_TOKEN")}
    env["PYTHONPATH"] = str(REPO)
    # the first apply creates the workspace folders (models/ exists, custom_nodes/ etc. do not)
    warm = subprocess.run(
        [sys.executable, "-m", "provisioner", "apply", "--manifest", str(manifest),
         "--root", str(root)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if warm.returncode != 0 or " model " in warm.stdout:
        raise SystemExit(f"the first apply touched models:\n{warm.stdout}\n{warm.stderr}")
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "provisioner", "apply", "--manifest", str(manifest),
             "--root", str(root)],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        times.append(time.perf_counter() - t)
        if result.returncode != 0 or "0 done, 0 failed, 0 change(s) still pending" not in (
            result.stdout
        ):
            raise SystemExit(f"apply was not a no-op:\n{result.stdout}\n{result.stderr}")
    return times


def time_apply_inprocess(root: Path, manifest: Path, runs: int) -> list[float]:
    from provisioner.apply import apply_all
    from provisioner.core.config import load_versions
    from provisioner.core.layout import Layout
    from provisioner.manifest.merge import load_desired

    desired, secrets = load_desired(str(manifest), {})
    versions = load_versions()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        report = apply_all(desired, Layout(root), versions, secrets)
        times.append(time.perf_counter() - t)
        assert report.results == [] and report.remaining == [], report
    return times


def time_sha256sum(paths: list[Path]) -> float:
    t = time.perf_counter()
    subprocess.run(["sha256sum", *map(str, paths)], check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--size-gib", type=float, default=4.0)
    parser.add_argument("--dir", help="where to create the sparse files (default: a temp dir)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--max-baseline-s", type=float, default=600.0,
        help="run sha256sum on a subset when hashing everything would take longer",
    )  # fmt: skip
    args = parser.parse_args()
    size = int(args.size_gib * 2**30)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="phoenix-bench-"))
    try:
        root, manifest = setup(base, args.files, size)
        files = sorted((root / "models" / "checkpoints").iterdir())
        total = sum(p.stat().st_size for p in files)
        py = time_python_pass(args.runs)
        cpu0 = children_cpu()
        cli = time_apply_cli(root, manifest, args.runs)
        cli_cpu = (children_cpu() - cpu0) / (args.runs + 1)  # + the untimed first apply
        inproc = time_apply_inprocess(root, manifest, args.runs)

        probe = time_sha256sum(files[:1])
        if probe * len(files) <= args.max_baseline_s:
            subset = files
        else:  # keep the baseline run within half the budget, at least two files
            subset = files[: max(2, min(len(files), int(args.max_baseline_s / 2 / probe)))]
        measured = time_sha256sum(subset)
        baseline = measured * len(files) / len(subset)
        extrapolated = len(subset) != len(files)

        cli_med, in_med = statistics.median(cli), statistics.median(inproc)
        print()
        each = f"{args.size_gib:g} GiB each"
        print(f"files: {len(files)} sparse, {total / 1e9:.1f} GB total ({each})")
        print("| what | wall time | vs sha256sum |")
        print("|---|---|---|")
        print(f"| `phoenix apply` (no-op, CLI process, median of {args.runs}) | {cli_med:.3f} s "
              f"| {baseline / cli_med:,.0f}x faster |")  # fmt: skip
        print(f"| `python -c pass` (interpreter start-up, median) | {statistics.median(py):.3f} s "
              "| |")  # fmt: skip
        print(f"| `phoenix apply` CPU time (user+sys per run) | {cli_cpu:.3f} s "
              f"| {baseline / cli_cpu:,.0f}x less |")  # fmt: skip
        print(f"| `apply_all` in-process (median of {args.runs}) | {in_med * 1000:.1f} ms "
              f"| {baseline / in_med:,.0f}x faster |")  # fmt: skip
        label = (f"`sha256sum` on {len(subset)} of {len(files)} files: {measured:.1f} s, "
                 f"extrapolated" if extrapolated else "`sha256sum` of all files")  # fmt: skip
        print(f"| {label} | {baseline:.1f} s | 1x |")
        print(f"CLI runs: {', '.join(f'{t:.3f}' for t in cli)} s; in-process: "
              f"{', '.join(f'{t * 1000:.1f}' for t in inproc)} ms; sha256sum rate "
              f"{len(subset) * size / measured / 1e9:.2f} GB/s")  # fmt: skip
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

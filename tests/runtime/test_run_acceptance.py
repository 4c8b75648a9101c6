"""``phoenix run`` end to end with real processes and signals, a stand-in ComfyUI on loopback."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.gitrepos import Repo
from tests.support.paths import FIXTURES, REPO
from tests.support.pod import CIVITAI_TOKEN, HF_TOKEN, group_members, http_get
from tests.support.safetensors import LORA_KEYS, safetensors_bytes
from tests.support.servers import free_port

TOKENS = (HF_TOKEN.encode(), CIVITAI_TOKEN.encode())


def _cli_env(home: Path) -> dict[str, str]:
    """A minimal environment for a real `phoenix run` child, with both tokens planted."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "PYTHONPATH": str(REPO),
        "HUGGINGFACE_TOKEN": HF_TOKEN,
        "CIVITAI_TOKEN": CIVITAI_TOKEN,
    }


def _bytecode(*trees: Path) -> list[Path]:
    """Every ``*.pyc`` and ``__pycache__`` under ``trees`` (the run must write none)."""
    return [
        p for tree in trees for p in tree.rglob("*")
        if p.name == "__pycache__" or p.suffix == ".pyc"
    ]  # fmt: skip


def _service_pids(status: dict[str, Any]) -> dict[str, int]:
    return {s["name"]: s["pid"] for s in status["services"] if s["pid"]}


def _fake_filebrowser(tmp: Path) -> str:
    script = tmp / "bin" / "filebrowser"
    script.parent.mkdir(parents=True)
    target = FIXTURES / "fake_filebrowser" / "filebrowser.py"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} {target} "$@"\n')
    script.chmod(0o700)
    return str(script)


def test_run_ready_status_secrets_limits_and_sigterm(pod_factory: Any, tmp_path: Path) -> None:
    pod = pod_factory(filebrowser_port=free_port())
    pod.cfg["filebrowser"] = _fake_filebrowser(pod.tmp)
    pod.start(extra_env={"FB_PASSWORD": "correct-horse-battery-staple-42"})
    status = pod.wait_ready()

    # /status: phase, flags with reasons, versions, apply results, services
    assert status["phase"] == "ready"
    args = status["flags"]["args"]
    assert args[:2] == ["--base-directory", str(pod.root)] and "--cpu" in args
    assert any(
        r["flag"] == "--cpu" and "no NVIDIA GPU" in r["reason"] for r in status["flags"]["reasons"]
    )
    versions = status["versions"]
    assert versions["phoenix"] and versions["comfyui_version"] == "0.0.0-fake"
    assert versions["python"] == sys.version.split()[0] and versions["gpu"] is None
    assert versions["filebrowser"].startswith("File Browser v0.0.0-fake")
    assert status["apply"]["progress"] == {"done": 1, "ok": 1, "failed": 0, "remaining": 0}
    assert len(status["plan_hash"]) == 16
    pids = _service_pids(status)
    assert set(pids) == {"comfyui", "filebrowser"}
    code, health = http_get(pod.url + "/healthz")
    assert code == 200 and health["ok"] is True

    # every service process (and the grandchild) has no token, core limit 0
    members = group_members(set(pids.values()))
    assert len(members) >= 3  # comfyui, its grandchild, filebrowser
    for pid in members:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert not any(t in environ for t in TOKENS), pid
        assert b"correct-horse" not in environ
        limits = Path(f"/proc/{pid}/limits").read_text()
        core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
        assert core.split()[4:6] == ["0", "0"], core
    fb_env = Path(f"/proc/{pids['filebrowser']}/environ").read_bytes().split(b"\0")
    assert any(v.startswith(b"FB_PASSWORD=$2b$") for v in fb_env)
    assert b"FB_USERNAME=phoenix" in fb_env
    cmdlines = b"".join(Path(f"/proc/{pid}/cmdline").read_bytes() for pid in members)
    assert not any(t in cmdlines for t in TOKENS) and b"correct-horse" not in cmdlines

    # SIGTERM: everything stops within 10 s, cleanup runs, exit 0, nothing left
    started = time.monotonic()
    pod.signal(signal.SIGTERM)
    out = pod.finish(timeout=15)
    assert pod.proc.returncode == 0, out
    assert time.monotonic() - started < 10
    assert "cleanup: removed" in out and "received SIGTERM" in out
    assert group_members(set(pids.values())) == [] and pod.leftovers() == []
    assert not (pod.home / ".bash_history").exists()
    assert "does not exist: services run as root" in out or "dropping root" in out

    # no file under the root, no log, no console line holds a token; modes 0600/0700
    assert not any(t.decode() in out for t in TOKENS) and "correct-horse" not in out
    files = [p for p in pod.root.rglob("*")]
    assert (pod.root / ".phoenix" / "logs" / "comfyui.log").exists()
    for path in [pod.root, *files]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o700, (path, oct(mode))
        else:
            assert mode == 0o600, (path, oct(mode))
            data = path.read_bytes()
            assert not any(t in data for t in TOKENS), path
    assert (pod.root / "models" / "loras" / "lora.safetensors").exists()
    assert _bytecode(pod.root, pod.checkout) == []


def test_crash_is_restarted_with_backoff_then_budget_exits_nonzero(pod_factory: Any) -> None:
    pod = pod_factory(restart={"max_restarts": 2, "backoff_initial": 0.3, "backoff_max": 5})
    (pod.checkout / "crash").write_text("")
    started = time.monotonic()
    out = pod.start().finish(timeout=30)
    elapsed = time.monotonic() - started
    assert pod.proc.returncode == 1, out
    assert "restart 1/2 in 0.3 s" in out and "restart 2/2 in 0.6 s" in out
    assert "failed past the restart budget" in out
    assert elapsed >= 0.9  # both backoff delays were waited
    log = (pod.root / ".phoenix" / "logs" / "comfyui.log").read_text()
    assert log.count("crashing at start") == 3
    assert pod.leftovers() == []


def test_crash_after_ready_recovers(pod_factory: Any) -> None:
    pod = pod_factory(restart={"max_restarts": 3, "backoff_initial": 0.2})
    marker = pod.checkout / "crash"
    marker.write_text("0.5")
    pod.start()
    pod.wait_ready()
    deadline = time.monotonic() + 15
    restarted = False
    while time.monotonic() < deadline and not restarted:
        status = http_get(pod.url + "/status")[1]
        restarted = status["services"][0]["restarts"] >= 1
        time.sleep(0.1)
    assert restarted
    marker.unlink()  # the next start stays up
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status = http_get(pod.url + "/status")[1]
        comfy = status["services"][0]
        if comfy["state"] == "running" and comfy["ready"]:
            break
        time.sleep(0.1)
    assert comfy["ready"] and status["phase"] == "ready"
    pod.signal(signal.SIGTERM)
    assert "[comfyui] fake comfyui: crashing now" in pod.finish()
    assert pod.proc.returncode == 0


def test_service_ignoring_sigterm_is_killed(pod_factory: Any) -> None:
    pod = pod_factory(stop_timeout_s=1.0)
    (pod.checkout / "ignore_sigterm").write_text("")
    pod.start()
    pids = _service_pids(pod.wait_ready())
    started = time.monotonic()
    pod.signal(signal.SIGTERM)
    out = pod.finish()
    assert pod.proc.returncode == 0 and time.monotonic() - started < 10
    assert "did not stop in 1.0 s, SIGKILL" in out
    assert group_members(set(pids.values())) == [] and pod.leftovers() == []


def test_paranoid_ephemeral_removes_outputs_and_inputs_sigint_130(pod_factory: Any) -> None:
    pod = pod_factory(paranoid=True)
    pod.start()
    pod.wait_ready()
    (pod.root / "input" / "upload.png").write_bytes(b"user upload")
    assert (pod.root / "output" / "ComfyUI_00001_.png").exists()
    pod.signal(signal.SIGINT)
    out = pod.finish()
    assert pod.proc.returncode == 130, out
    assert list((pod.root / "output").iterdir()) == []
    assert list((pod.root / "input").iterdir()) == []
    assert list((pod.root / "user").iterdir()) == []
    assert (pod.root / "models" / "loras" / "lora.safetensors").exists()


def test_paranoid_on_volume_leaves_models_and_data(pod_factory: Any) -> None:
    pod = pod_factory(paranoid=True, storage_mode="volume")
    pod.start()
    pod.wait_ready()
    pod.signal(signal.SIGTERM)
    out = pod.finish()
    assert pod.proc.returncode == 0, out
    assert "storage: volume" in out
    assert (pod.root / "models" / "loras" / "lora.safetensors").exists()
    assert (pod.root / "output" / "ComfyUI_00001_.png").exists()


def test_required_failure_stops_before_launch(pod_factory: Any) -> None:
    pod = pod_factory(
        items=[
            {"id": "civitai:1", "ok": False, "required": True, "message": "sha256 mismatch"},
            {"id": "civitai:2", "ok": False, "required": False, "message": "404"},
        ]
    )
    out = pod.start().finish()
    assert pod.proc.returncode == 1, out
    assert "required item(s) failed: civitai:1" in out and "optional item civitai:2" in out
    assert not (pod.root / "output" / "fake_grandchild.pid").exists()
    assert "cleanup: removed" in out


def test_health_port_in_use_is_a_user_error_before_launch(pod_factory: Any) -> None:
    import socket

    pod = pod_factory()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", pod.health_port))
        taken.listen()
        out = pod.start().finish()
    assert pod.proc.returncode == 1, out
    assert "--health-port: the health API cannot listen on 127.0.0.1:" in out
    assert "choose a free port" in out and "Traceback" not in out
    assert not (pod.root / "output" / "fake_grandchild.pid").exists()


def test_optional_failure_still_launches(pod_factory: Any) -> None:
    pod = pod_factory(items=[{"id": "civitai:2", "ok": False, "required": False, "message": "x"}])
    pod.start()
    status = pod.wait_ready()
    assert status["apply"]["results"][0]["ok"] is False
    assert any("optional item civitai:2 failed" in w for w in status["warnings"])
    assert any("FileBrowser" in w for w in status["warnings"]) is False
    pod.signal(signal.SIGTERM)
    pod.finish()
    assert pod.proc.returncode == 0


def test_rtx5090_with_old_torch_stops_with_no_kernel_image(pod_factory: Any) -> None:
    pod = pod_factory(torch_archs=["sm_80", "sm_86", "sm_90"])
    out = pod.start().finish()
    assert pod.proc.returncode == 1, out
    assert "no kernel image is available" in out and "sm_120" in out
    assert "CUDA 12.8+" in out
    assert pod.leftovers() == []


def test_rtx5090_check_during_launch_stops_comfyui(pod_factory: Any) -> None:
    """The torch import is slow, so it runs beside the launch; a failure still stops the pod."""
    pod = pod_factory(torch_archs=["sm_80", "sm_90"], torch_import_s=2.0, stop_timeout_s=2.0)
    out = pod.start().finish()
    assert pod.proc.returncode == 1, out
    assert "ComfyUI flags:" in out and "--bf16-unet" in out  # flags chosen for the 5090
    assert "no kernel image is available" in out
    assert pod.leftovers() == []


def test_rtx5090_with_cu128_torch_runs(pod_factory: Any) -> None:
    pod = pod_factory(torch_archs=["sm_80", "sm_90", "sm_100", "sm_120"])
    pod.start()
    status = pod.wait_ready()
    deadline = time.monotonic() + 10
    while status["versions"].get("cuda") is None and time.monotonic() < deadline:
        time.sleep(0.1)
        status = http_get(pod.url + "/status")[1]
    assert status["versions"]["gpu"] == "NVIDIA GeForce RTX 5090"
    assert status["versions"]["cuda"] == "12.4" and status["versions"]["driver"] == "575.57.08"
    assert "--use-pytorch-cross-attention" in status["flags"]["args"]
    pod.signal(signal.SIGTERM)
    assert "has kernels for sm_120" in pod.finish()
    assert pod.proc.returncode == 0


def test_phoenix_run_cli_with_a_manifest_file(pod_factory: Any) -> None:
    """The real CLI path: manifest YAML through the spine's loader, planted tokens in the env."""
    pod = pod_factory()
    manifest = pod.tmp / "manifest.yaml"
    manifest.write_text(
        "version: 1\n"
        f"comfyui: {{path: '{pod.checkout}', listen: 127.0.0.1, port: {pod.comfy_port}}}\n"
        f"services: {{filebrowser: {{enabled: false}}, health: {{port: {pod.health_port}}}}}\n"
        "storage: {min_free_gb: 0}\n"
    )
    env = _cli_env(pod.home)
    argv = [sys.executable, "-m", "provisioner", "run", "--skip-apply",
            "--manifest", str(manifest), "--root", str(pod.root)]  # fmt: skip
    pod.proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    status = pod.wait_ready()
    pids = _service_pids(status)
    for pid in group_members(set(pids.values())):
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert not any(t in environ for t in TOKENS)
    pod.signal(signal.SIGTERM)
    out = pod.finish()
    assert pod.proc.returncode == 0, out
    assert "phoenix: INFO phoenix.services: service comfyui: started pid" in out
    assert not any(t.decode() in out for t in TOKENS)
    assert pod.leftovers() == []


def test_sigterm_during_apply_stops_without_launch(pod_factory: Any) -> None:
    pod = pod_factory(
        items=[{"id": "hf:big/model", "ok": True, "required": False, "file": "big.safetensors",
                "sleep_s": 60}]
    )  # fmt: skip
    pod.start()
    deadline = time.monotonic() + 20
    phase = None
    while time.monotonic() < deadline and phase != "apply":
        try:
            phase = http_get(pod.url + "/status")[1]["phase"]
        except OSError:
            time.sleep(0.05)
    assert phase == "apply"
    started = time.monotonic()
    pod.signal(signal.SIGTERM)
    out = pod.finish()
    assert pod.proc.returncode == 0, out
    assert time.monotonic() - started < 5
    assert "stop requested before ComfyUI was launched" in out and "cleanup: removed" in out
    assert not (pod.root / "output" / "fake_grandchild.pid").exists()


def test_generated_filebrowser_password_shown_once_stored_nowhere(pod_factory: Any) -> None:
    pod = pod_factory(filebrowser_port=free_port())
    pod.cfg["filebrowser"] = _fake_filebrowser(pod.tmp)
    pod.start()
    pids = _service_pids(pod.wait_ready())
    assert set(pids) == {"comfyui", "filebrowser"}
    pod.signal(signal.SIGTERM)
    out = pod.finish()
    assert pod.proc.returncode == 0, out
    logins = [line for line in out.splitlines() if "FileBrowser login:" in line]
    assert len(logins) == 1
    password = logins[0].rsplit(" / ", 1)[1]
    assert len(password) >= 24 and out.count(password) == 1
    for path in [*pod.root.rglob("*"), *pod.tmp.rglob("*.log*")]:
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def test_filebrowser_binary_missing_is_a_warning(pod_factory: Any) -> None:
    pod = pod_factory(filebrowser_port=free_port())
    # no "filebrowser" in the harness config: Phoenix looks it up on PATH, where there is none
    pod.start()
    status = pod.wait_ready()
    assert [s["name"] for s in status["services"]] == ["comfyui"]
    assert any("binary is not on PATH: skipped" in w for w in status["warnings"])
    assert status["versions"]["filebrowser"] is None
    pod.signal(signal.SIGTERM)
    assert "FileBrowser login" not in pod.finish()
    assert pod.proc.returncode == 0


class _ModelServer:
    """A tiny file server on loopback that the test owns: one file, every request recorded."""

    def __init__(self, name: str, body: bytes) -> None:
        self.name, self.body = name, body
        self.requests: list[tuple[str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append((self.path, dict(self.headers.items())))
                if self.path != f"/files/{owner.name}":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(owner.body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/files/{name}"

    def __enter__(self) -> _ModelServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _git_commit_all(checkout: Path) -> str:
    """Make the stand-in checkout a git repo at one commit (so the ComfyUI kind is unchanged)."""
    return Repo(checkout).commit({}, "stand-in ComfyUI")


def _files_under(*trees: Path) -> Iterator[Path]:
    for tree in trees:
        yield from (p for p in tree.rglob("*") if p.is_file() and not p.is_symlink())


def test_phoenix_run_cli_applies_a_url_model_end_to_end(pod_factory: Any) -> None:
    """`phoenix run` for real: manifest loader, real apply of a `url:` model from loopback,
    ready, /status, SIGTERM → 0; no planted token in any file, log or child environment."""
    pod = pod_factory()
    body = safetensors_bytes(LORA_KEYS, {"ss_network_module": "networks.lora"})
    sha = hashlib.sha256(body).hexdigest()
    with _ModelServer("tiny-lora.safetensors", body) as server:
        manifest = pod.cli_manifest(
            f"  - url: {server.url}\n    type: loras\n    sha256: {sha}\n    required: true\n"
        )
        env = _cli_env(pod.home)
        argv = [sys.executable, "-m", "provisioner", "run", "--manifest", str(manifest),
                "--root", str(pod.root)]  # fmt: skip
        pod.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        status = pod.wait_ready(timeout=60)

        # the model: fetched once from the loopback server, no credentials sent, verified, placed
        placed = pod.root / "models" / "loras" / "tiny-lora.safetensors"
        assert hashlib.sha256(placed.read_bytes()).hexdigest() == sha
        gets = [h for path, h in server.requests if path.endswith("tiny-lora.safetensors")]
        assert len(gets) == 1
        assert not any(k.lower() in {"authorization", "cookie"} for k in gets[0])
        rows = {r["id"]: r for r in status["apply"]["results"]}
        assert rows[f"url:{server.url}"]["ok"] is True, rows
        assert status["apply"]["progress"]["failed"] == 0

        pids = _service_pids(status)
        members = group_members(set(pids.values()))
        assert members
        for pid in members:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert not any(t in environ for t in TOKENS), pid

        pod.signal(signal.SIGTERM)
        out = pod.finish()
    assert pod.proc.returncode == 0, out
    assert "cleanup: removed" in out and not any(t.decode() in out for t in TOKENS)
    assert pod.leftovers() == []
    assert placed.exists()  # models survive cleanup
    logs = list((pod.root / ".phoenix" / "logs").glob("*.log*"))
    assert logs  # ComfyUI's log is there, and checked below with every other file
    for path in _files_under(pod.root):
        data = path.read_bytes()
        assert not any(t in data for t in TOKENS), path
    assert _bytecode(pod.root, pod.checkout) == []

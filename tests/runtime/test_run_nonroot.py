"""``phoenix run`` started directly as the image's service user (uid/gid 10001), the way
Kubernetes starts it with examples/kubernetes/deployment.yaml's securityContext, rather than
as root dropping privileges.

The workspace root is prepared as the kubelet's fsGroup leaves a volume's root: group 10001,
setgid, group rw (the fsGroup field's description in the Kubernetes API schema); the stand-in
ComfyUI checkout belongs to 10001 as the Dockerfile's ``chown -R sduser:sduser /opt/ComfyUI``
makes it. Needs root here only to start the child as 10001 (with ``setpriv``, util-linux).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.test_run_acceptance import _cli_env, _git_commit_all, _ModelServer
from tests.support.paths import FIXTURES, REPO
from tests.support.pod import http_get
from tests.support.safetensors import LORA_KEYS, safetensors_bytes
from tests.support.servers import free_port

UID = GID = 10001  # the Dockerfile's sduser; deployment.yaml's runAsUser/runAsGroup/fsGroup

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="starting a process as uid 10001 needs root and setpriv (util-linux)",
)


def _searchable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


def as_service_user(argv: list[str]) -> list[str]:
    """``argv`` as uid/gid 10001 with supplementary group 10001 (fsGroup), no capabilities.

    Where this test's own interpreter sits under a folder others cannot enter (pyenv under
    /root), the child keeps CAP_DAC_READ_SEARCH only, to read it: every write is still
    checked as uid 10001, and writes are what this test is about.
    """
    ids = ["setpriv", f"--reuid={UID}", f"--regid={GID}", f"--groups={GID}"]
    if not all(_searchable_by_others(Path(p)) for p in (sys.prefix, REPO)):
        ids += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    else:
        ids += ["--inh-caps=-all"]
    return [*ids, *argv]


@pytest.fixture
def pod_dir() -> Iterator[Path]:
    """A folder uid 10001 can reach (pytest's tmp_path is root's, mode 0700)."""
    base = Path(tempfile.mkdtemp(prefix="phoenix-nonroot-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    for path in [top, *top.rglob("*")]:
        os.lchown(path, uid, gid)


def _volume_root(path: Path, mode: int) -> Path:
    """A workspace root as the kubelet leaves it with fsGroup: root-owned, group 10001."""
    path.mkdir()
    os.chown(path, 0, GID)
    path.chmod(mode)
    return path


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        as_service_user(argv), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip


def _stop(proc: subprocess.Popen[str]) -> str:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    return out or ""


def _manifest(folder: Path, checkout: Path, comfy: int, health: int, extra: str = "") -> Path:
    commit = _git_commit_all(checkout)
    path = folder / "manifest.yaml"
    path.write_text(
        "version: 1\n"
        f"comfyui: {{path: '{checkout}', repo: 'file://{checkout}', ref: {commit}, "
        f"listen: 127.0.0.1, port: {comfy}}}\n"
        f"services: {{filebrowser: {{enabled: false}}, health: {{port: {health}}}}}\n"
        "storage: {min_free_gb: 0}\n" + extra
    )
    path.chmod(0o644)  # a ConfigMap file: root's, world-readable
    return path


def _checkout(folder: Path) -> Path:
    checkout = folder / "ComfyUI"
    shutil.copytree(
        FIXTURES / "fake_comfyui", checkout, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return checkout


def test_phoenix_run_as_uid_10001_applies_serves_and_stops(pod_dir: Path) -> None:
    checkout = _checkout(pod_dir)
    home = pod_dir / "home"
    home.mkdir()
    root = _volume_root(pod_dir / "workspace", 0o2770)
    comfy, health = free_port(), free_port()
    body = safetensors_bytes(LORA_KEYS, {"ss_network_module": "networks.lora"})
    sha = hashlib.sha256(body).hexdigest()
    with _ModelServer("tiny-lora.safetensors", body) as server:
        manifest = _manifest(
            pod_dir, checkout, comfy, health,
            f"models:\n  - url: {server.url}\n    type: loras\n    sha256: {sha}\n"
            "    required: true\n",
        )  # fmt: skip
        _chown_tree(checkout, UID, GID)
        _chown_tree(home, UID, GID)
        argv = [sys.executable, "-m", "provisioner", "run", "--manifest", str(manifest),
                "--root", str(root)]  # fmt: skip
        proc = _start(argv, {**_cli_env(home), "PHOENIX_STOP_GRACE": "25"})
        try:
            status: dict[str, Any] = {}
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(OSError):
                    code, _ = http_get(f"http://127.0.0.1:{health}/readyz", timeout=1.5)
                    status = http_get(f"http://127.0.0.1:{health}/status")[1]
                    if code == 200 and status["phase"] == "ready":
                        break
                time.sleep(0.2)
            assert status.get("phase") == "ready", _stop(proc)
            assert status["apply"]["progress"]["failed"] == 0, status["apply"]
            pids = [s["pid"] for s in status["services"] if s["pid"]]
            for pid in pids:  # ComfyUI runs as 10001 too, with no capability left
                proc_status = Path(f"/proc/{pid}/status").read_text()
                uids = next(line for line in proc_status.splitlines() if line.startswith("Uid:"))
                assert uids.split()[1:] == [str(UID)] * 4, uids
                eff = next(line for line in proc_status.splitlines() if line.startswith("CapEff:"))
                assert int(eff.split()[1], 16) & ~(1 << 2) == 0, eff  # at most dac_read_search
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                _stop(proc)
    assert proc.returncode == 0, out
    assert f"running as uid {UID}, not root: nothing to drop" in out
    placed = root / "models" / "loras" / "tiny-lora.safetensors"
    assert hashlib.sha256(placed.read_bytes()).hexdigest() == sha
    # everything Phoenix made on the volume is 10001's, and the root was left as it was
    made = [p for p in root.rglob("*")]
    assert made and all(p.lstat().st_uid == UID for p in made)
    assert (root.stat().st_uid, root.stat().st_gid) == (0, GID)


def test_a_volume_root_10001_cannot_write_is_an_error_naming_it(pod_dir: Path) -> None:
    """A volume whose root ignores fsGroup (root:root 0755, as some NFS exports): exit 1, the
    path and what to do in the message, no traceback, no service started."""
    checkout = _checkout(pod_dir)
    home = pod_dir / "home"
    home.mkdir()
    root = _volume_root(pod_dir / "workspace", 0o755)
    os.chown(root, 0, 0)
    health = free_port()
    manifest = _manifest(pod_dir, checkout, free_port(), health)
    _chown_tree(checkout, UID, GID)
    _chown_tree(home, UID, GID)
    argv = [sys.executable, "-m", "provisioner", "run", "--manifest", str(manifest),
            "--root", str(root)]  # fmt: skip
    proc = _start(argv, _cli_env(home))
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            _stop(proc)
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert f"{root}" in out and f"uid {UID}" in out and "fsGroup" in out, out
    assert list(root.iterdir()) == []

"""A running pod for the runtime tests: ``run_pod`` in a real process (pod_harness.py) over a
stand-in ComfyUI checkout, with planted tokens, and the probes the tests read it with."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.gitrepos import Repo
from tests.support.paths import FIXTURES, REPO
from tests.support.servers import free_port

HARNESS = Path(__file__).parent / "pod_harness.py"
HF_TOKEN = "hf_PLANTEDtokenVALUE_1234567890"
CIVITAI_TOKEN = "civPLANTEDtokenVALUE0987654321"


def http_get(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def group_members(pgids: set[int]) -> list[int]:
    """Live (non-zombie) processes in any of ``pgids``, found by scanning /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
            if fields[0] != b"Z" and int(fields[2]) in pgids:
                found.append(int(entry))
    return found


class Pod:
    """A ``run_pod`` process started through the harness."""

    def __init__(self, tmp: Path, **overrides: Any) -> None:
        self.tmp = tmp
        self.checkout = tmp / "ComfyUI"
        # without bytecode another test may have left beside the fixture: a run must add none
        shutil.copytree(
            FIXTURES / "fake_comfyui", self.checkout,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )  # fmt: skip
        self.root = tmp / "workspace"
        self.home = tmp / "home"
        self.home.mkdir()
        (self.home / ".bash_history").write_text("export HF_TOKEN=old\n")
        self.comfy_port, self.health_port = free_port(), free_port()
        manifest = {
            "comfyui": {"path": str(self.checkout), "listen": "127.0.0.1", "port": self.comfy_port},
            "services": {"filebrowser": {"enabled": False}, "health": {"port": self.health_port}},
            "storage": {"root": str(self.root), "min_free_gb": 0},
        }
        self.cfg: dict[str, Any] = {
            "root": str(self.root),
            "home": str(self.home),
            "health_port": self.health_port,
            "manifest": manifest,
            "items": [{"id": "hf:org/repo/lora.safetensors", "ok": True, "required": False,
                       "file": "lora.safetensors"}],
            "stop_timeout_s": 3.0,
        }  # fmt: skip
        for key, value in overrides.items():
            if key in ("paranoid", "storage_mode", "filebrowser_port"):
                continue
            self.cfg[key] = value
        if overrides.get("paranoid"):
            manifest["security"] = {"paranoid": True}
        if overrides.get("storage_mode"):
            manifest["storage"]["mode"] = overrides["storage_mode"]
        if overrides.get("filebrowser_port"):
            manifest["services"]["filebrowser"] = {
                "enabled": True,
                "port": overrides["filebrowser_port"],
                "username": "phoenix",
            }
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def cli_manifest(self, models: str) -> Path:
        """A manifest for a real ``phoenix run`` of this pod: the stand-in ComfyUI committed at
        one commit (so the ComfyUI kind is unchanged), its ports, no FileBrowser, ``models``."""
        commit = Repo(self.checkout).commit({}, "stand-in ComfyUI")
        manifest = self.tmp / "manifest.yaml"
        manifest.write_text(
            "version: 1\n"
            f"comfyui: {{path: '{self.checkout}', repo: 'file://{self.checkout}', ref: {commit}, "
            f"listen: 127.0.0.1, port: {self.comfy_port}}}\n"
            f"services: {{filebrowser: {{enabled: false}}, health: {{port: {self.health_port}}}}}\n"
            "storage: {min_free_gb: 0}\n"
            f"models:\n{models}"
        )
        return manifest

    def start(self, extra_env: dict[str, str] | None = None) -> Pod:
        cfg_file = self.tmp / "cfg.json"
        cfg_file.write_text(json.dumps(self.cfg))
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "PYTHONPATH": str(REPO),
            "HUGGINGFACE_TOKEN": HF_TOKEN,
            "CIVITAI_TOKEN": CIVITAI_TOKEN,
            **(extra_env or {}),
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(HARNESS), str(cfg_file)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"pod exited early:\n{self.finish()}")
            with contextlib.suppress(OSError):
                code, _ = http_get(self.url + "/readyz", timeout=1.5)
                status = http_get(self.url + "/status")[1]
                if code == 200 and status["phase"] == "ready":
                    return dict(status)
            time.sleep(0.1)
        raise AssertionError(f"not ready in {timeout} s:\n{self.kill()}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 30.0) -> str:
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=timeout)
        self.output += out or ""
        return self.output

    def leftovers(self) -> list[int]:
        """Processes still running from this pod's stand-ins (by command line)."""
        marks = (str(self.checkout).encode(), b"time.sleep(3600)", b"fake_filebrowser")
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                env = Path(f"/proc/{entry}/environ").read_bytes()
                mine = str(self.home).encode() in env
                if stat[0] != b"Z" and mine and any(m in cmdline for m in marks):
                    found.append(int(entry))
        return found

    def kill(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            return self.finish(timeout=5)
        return self.output

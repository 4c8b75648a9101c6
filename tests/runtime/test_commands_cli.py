"""`phoenix doctor` and `phoenix cleanup` through the real CLI in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.runtime.conftest import FIXTURES, HF_TOKEN, REPO


def _phoenix(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *argv],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor_json(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        f"version: 1\ncomfyui: {{path: '{FIXTURES / 'fake_comfyui'}', args: [--normalvram]}}\n"
    )
    env = {"HOME": str(tmp_path), "HUGGINGFACE_TOKEN": HF_TOKEN}
    done = _phoenix(
        "doctor", "--json", "--manifest", str(manifest), "--root", str(tmp_path), env=env
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["gpu"] is None and "--cpu" in report["flags"]["args"]
    assert report["flags"]["dropped"] == ["--normalvram"]
    assert report["versions"]["comfyui_version"] == "0.0.0-fake"
    assert HF_TOKEN not in done.stdout + done.stderr
    text = _phoenix("doctor", "--manifest", str(manifest), "--root", str(tmp_path), env=env)
    assert "torch/GPU check: -: no GPU" in text.stdout


def test_cleanup_dry_run_and_run(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "output").mkdir(parents=True)
    (root / "output" / "x.png").write_bytes(b"png")
    (root / ".phoenix" / "staging").mkdir(parents=True)
    (root / ".phoenix" / "staging" / "a.part").write_bytes(b"part")
    env = {"HOME": str(tmp_path / "home"), "PARANOID_MODE": "false"}
    dry = _phoenix("cleanup", "--root", str(root), "--dry-run", env=env)
    assert dry.returncode == 0 and "partial downloads" in dry.stdout
    assert "PARANOID" not in dry.stdout
    done = _phoenix("cleanup", "--root", str(root), "--paranoid", "--mode", "ephemeral", env=env)
    assert done.returncode == 0, done.stderr
    assert "removed 2 files" in done.stdout
    assert not (root / "output" / "x.png").exists()


def test_run_rejects_a_bad_grace_period(tmp_path: Path) -> None:
    done = _phoenix(
        "run", "--root", str(tmp_path), env={"HOME": str(tmp_path), "PHOENIX_STOP_GRACE": "soon"}
    )
    assert done.returncode == 1
    assert "PHOENIX_STOP_GRACE: expected a positive number of seconds, found 'soon'" in done.stderr
    assert "Traceback" not in done.stderr

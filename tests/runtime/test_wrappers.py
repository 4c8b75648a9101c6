"""The seed's shell scripts exist and exec the matching phoenix subcommand with their args."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

MAPPING = [
    ("entrypoint.sh", [], ["run"]),
    ("scripts/system_setup.sh", ["--json"], ["doctor", "--json"]),
    ("scripts/download_manager.sh", ["--jobs", "2"], ["apply", "--jobs", "2"]),
    ("scripts/organizer.sh", [], ["apply"]),
    ("scripts/forensic_cleanup.sh", ["--paranoid"], ["cleanup", "--paranoid"]),
    (
        "scripts/service_manager.sh",
        ["start", "--jobs", "1"],
        ["run", "--skip-apply", "--jobs", "1"],
    ),
    ("scripts/service_manager.sh", ["status", "--json"], ["status", "--json"]),
    ("scripts/service_manager.sh", ["stop", "--root", "/w"], ["stop", "--root", "/w"]),
]


@pytest.fixture
def recorder(tmp_path: Path) -> Path:
    """A stand-in phoenix that writes its argv, one per line, and its pid."""
    script = tmp_path / "record"
    script.write_text(
        '#!/bin/sh\necho "$$" > "$0.pid"\nfor a in "$@"; do echo "$a"; done > "$0.args"\n'
    )
    script.chmod(0o700)
    return script


@pytest.mark.parametrize(("wrapper", "given", "expected"), MAPPING)
def test_wrapper_execs_subcommand(
    recorder: Path, wrapper: str, given: list[str], expected: list[str]
) -> None:
    path = REPO / wrapper
    assert os.access(path, os.X_OK), wrapper
    proc = subprocess.run(
        [str(path), *given], env={**os.environ, "PHOENIX_BIN": str(recorder)}, check=True
    )
    assert proc.returncode == 0
    recorded = Path(f"{recorder}.args").read_text().split("\n")[:-1]
    assert recorded == [part for arg in expected for part in arg.split("=")]


def test_wrapper_reaches_real_phoenix() -> None:
    env = {**os.environ, "PHOENIX_BIN": f"{sys.executable} -m provisioner", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [str(REPO / "scripts" / "forensic_cleanup.sh"), "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--paranoid" in out and "--include-volume-data" in out

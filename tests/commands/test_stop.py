"""``phoenix stop``: SIGTERM to the pid file's ``phoenix run``; stale or foreign pids refused."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.core.layout import Layout
from tests.support.cli import clean_env, run_phoenix
from tests.support.paths import REPO

#: a process whose command line reads like ``python -m provisioner run`` (what run_pid checks)
LIKE_RUN = [sys.executable, "-c", "import time; time.sleep(60)", "provisioner", "run"]


def _write_pid(root: Path, pid: int | str) -> Path:
    path = Layout(root).run_pid
    path.parent.mkdir(parents=True)
    path.write_text(f"{pid}\n")
    return path


def test_stop_signals_the_run_of_that_root(tmp_path: Path) -> None:
    proc = subprocess.Popen(LIKE_RUN)
    try:
        _write_pid(tmp_path, proc.pid)
        done = run_phoenix("stop", "--root", str(tmp_path))
        assert done.returncode == 0, done.stderr
        assert f"pid {proc.pid}" in done.stdout
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_shim_passes_phoenix_root_through(tmp_path: Path) -> None:
    proc = subprocess.Popen(LIKE_RUN)
    try:
        _write_pid(tmp_path, proc.pid)
        env = clean_env(PHOENIX_ROOT=str(tmp_path), PHOENIX_BIN=f"{sys.executable} -m provisioner")
        subprocess.run([str(REPO / "scripts" / "service_manager.sh"), "stop"], env=env, check=True)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_pid_that_is_not_phoenix_run_is_not_signalled(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file = _write_pid(tmp_path, other.pid)
        done = run_phoenix("stop", "--root", str(tmp_path))
        assert done.returncode == 1
        assert f"pid {other.pid} is not phoenix run (the pid was reused)" in done.stderr
        assert str(pid_file) in done.stderr and "Traceback" not in done.stderr
        assert other.poll() is None  # still running: nothing was sent
    finally:
        other.kill()


@pytest.mark.parametrize(
    ("content", "said"),
    [(None, "no pid file"), ("abc", "not a pid: 'abc'"), ("999999999", "is gone")],
)
def test_missing_bad_or_stale_pid_files_are_errors_naming_the_file(
    tmp_path: Path, content: str | None, said: str
) -> None:
    if content is not None:
        _write_pid(tmp_path, content)
    done = run_phoenix("stop", "--root", str(tmp_path))
    assert done.returncode == 1, done.stdout
    assert said in done.stderr and str(Layout(tmp_path).run_pid) in done.stderr
    assert "is phoenix run running for this root?" in done.stderr

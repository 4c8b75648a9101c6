"""The volume lock with real processes: a second holder waits, says whom for, then proceeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from provisioner.core.errors import StateError
from provisioner.core.layout import Layout
from provisioner.state.volume_lock import volume_lock

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from provisioner.core.layout import Layout
    from provisioner.state.volume_lock import volume_lock
    root, ready, release = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    with volume_lock(Layout(root)):
        ready.write_text("held")
        while not release.exists():
            time.sleep(0.05)
    """
)


def _start_holder(root: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    ready, release = tmp_path / "ready", tmp_path / "release"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), str(ready), str(release)])
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None, "holder died"
        assert time.monotonic() < deadline, "holder never took the lock"
        time.sleep(0.05)
    return proc, release


def test_second_process_waits_with_a_message_then_proceeds(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc, release = _start_holder(root, tmp_path)
    messages: list[str] = []

    def note(msg: str) -> None:
        messages.append(msg)
        if len(messages) == 1:
            release.write_text("go")

    started = time.monotonic()
    with volume_lock(Layout(root), on_wait=note, poll=0.05):
        waited = time.monotonic() - started
        assert (root / ".phoenix/lock").read_text().strip() == str(os.getpid())
    assert proc.wait(10) == 0
    assert messages == [f"waiting for another phoenix apply on this volume (pid {proc.pid})..."]
    assert waited > 0


def test_kill_9_of_the_holder_releases_the_lock(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc, _ = _start_holder(root, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with volume_lock(Layout(root), timeout=5):
        pass


def test_timeout_names_the_holder(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc, release = _start_holder(root, tmp_path)
    try:
        with pytest.raises(StateError, match=f"pid {proc.pid}"), volume_lock(
            Layout(root), timeout=0.3, poll=0.05
        ):
            pass
    finally:
        release.write_text("go")
        proc.wait(10)


def test_uncontended_lock_is_silent_and_reentrant_in_sequence(tmp_path: Path) -> None:
    messages: list[str] = []
    for _ in range(2):
        with volume_lock(Layout(tmp_path), on_wait=messages.append):
            pass
    assert messages == []
    assert (tmp_path / ".phoenix/lock").read_text() == ""

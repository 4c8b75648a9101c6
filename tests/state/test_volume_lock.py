"""The volume lock (a lease file): waits name the holder, dead holders on this host or another
are taken over, live ones never, and the judgement itself is a table of cases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from provisioner.core.errors import LockLostError, StateError
from provisioner.core.layout import Layout
from provisioner.state.volume_lock import (
    HostId,
    Lease,
    judge,
    process_start,
    read_lease,
    this_host,
    volume_lock,
)

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

ME = HostId("pod-a", "boot-1", "4026531836")
OTHER = HostId("pod-b", "boot-2", "4026531836")


def _lease(
    host: HostId = OTHER, *, pid: int = 4242, renewed: float = 1000.0, **kw: object
) -> Lease:
    base = Lease(
        token="t" * 32, hostname=host.hostname, boot_id=host.boot_id, pid_ns=host.pid_ns,
        pid=pid, pid_start="77", acquired=renewed, renewed=renewed, lease_s=30.0,
        heartbeat_s=5.0,
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def _start_holder(root: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    ready, release = tmp_path / "ready", tmp_path / "release"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), str(ready), str(release)])
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None, "holder died"
        assert time.monotonic() < deadline, "holder never took the lock"
        time.sleep(0.05)
    return proc, release


def _plant(root: Path, lease: Lease) -> Path:
    path = Layout(root).volume_lock
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lease.to_text())
    return path


# -- the judgement, as a table --------------------------------------------------------------
@pytest.mark.parametrize(
    ("lease", "now", "alive", "start", "verdict"),
    [
        # same host: the pid decides, at once, whatever the lease says
        (_lease(ME), 1001.0, True, "77", "live"),
        (_lease(ME), 1001.0, False, None, "dead"),
        (_lease(ME), 9999.0, True, "77", "live"),  # a slow heartbeat on this host is no death
        (_lease(ME), 1001.0, True, "90", "dead"),  # the pid now names another process
        # another host: only the lease can tell
        (_lease(OTHER), 1010.0, False, None, "live"),
        (_lease(OTHER), 1031.0, True, "77", "expired"),
        # same hostname and boot, another pid namespace (two containers): another host
        (_lease(HostId("pod-a", "boot-1", "999")), 1010.0, False, None, "live"),
        (_lease(HostId("pod-a", "boot-1", "999")), 1031.0, False, None, "expired"),
        # same hostname, another boot (the pod restarted on another node): another host
        (_lease(HostId("pod-a", "boot-0", "4026531836")), 1031.0, True, "77", "expired"),
    ],
)
def test_judge(lease: Lease, now: float, alive: bool, start: str | None, verdict: str) -> None:
    assert judge(lease, ME, now, alive=lambda _pid: alive, start_of=lambda _pid: start) == verdict


def test_lease_round_trips_and_rejects_other_content() -> None:
    lease = _lease()
    assert Lease.parse(lease.to_text()) == lease
    for text in ("", "1234\n", "{}", '{"version": 1}', "[1]", lease.to_text()[:-9]):
        assert Lease.parse(text) is None


def test_this_host_reads_the_boot_id_and_process_start() -> None:
    me = this_host()
    assert me.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert process_start(os.getpid()) is not None
    assert process_start(2**22 + 1) is None  # above pid_max: no such process


# -- real holders ---------------------------------------------------------------------------
def test_second_process_waits_with_a_message_then_proceeds(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc, release = _start_holder(root, tmp_path)
    messages: list[str] = []

    def note(msg: str) -> None:
        messages.append(msg)
        if len(messages) == 1:
            release.write_text("go")

    with volume_lock(Layout(root), on_wait=note, poll=0.05):
        held = json.loads((root / ".phoenix/lock").read_text())
        assert (held["pid"], held["hostname"]) == (os.getpid(), this_host().hostname)
    assert proc.wait(10) == 0
    assert len(messages) == 1
    assert messages[0].startswith(
        f"waiting for another phoenix apply on this volume (pid {proc.pid} on host "
        f"{this_host().hostname}, renewed "
    )


def test_kill_9_of_the_holder_frees_the_lock_at_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc, _ = _start_holder(root, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert (root / ".phoenix/lock").exists()  # the dead holder's lease is still there
    messages: list[str] = []
    started = time.monotonic()
    with volume_lock(Layout(root), on_wait=messages.append, timeout=5):
        pass
    assert time.monotonic() - started < 3  # no lease to wait out on the same host
    assert messages == [messages[0]] and f"pid {proc.pid} on host" in messages[0]
    assert messages[0].startswith("taking over the volume lock of a holder that is gone")


def test_timeout_names_the_holder(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc, release = _start_holder(root, tmp_path)
    try:
        with pytest.raises(StateError, match=f"pid {proc.pid} on host"), volume_lock(
            Layout(root), timeout=0.3, poll=0.05
        ):
            pass
    finally:
        release.write_text("go")
        proc.wait(10)


def test_uncontended_lock_is_silent_and_leaves_no_file(tmp_path: Path) -> None:
    messages: list[str] = []
    for _ in range(2):
        with volume_lock(Layout(tmp_path), on_wait=messages.append):
            assert (tmp_path / ".phoenix/lock").exists()
    assert messages == []
    assert sorted(p.name for p in (tmp_path / ".phoenix").iterdir()) == []


def test_an_older_phoenix_lock_file_left_empty_is_free(tmp_path: Path) -> None:
    path = Layout(tmp_path).volume_lock
    path.parent.mkdir(parents=True)
    path.write_text("")  # what the flock-based lock left after a release
    with volume_lock(Layout(tmp_path), timeout=2):
        assert Lease.parse(path.read_text()) is not None


def test_the_holder_renews_its_lease(tmp_path: Path) -> None:
    path = Layout(tmp_path).volume_lock
    with volume_lock(Layout(tmp_path), heartbeat_s=0.05):
        first = read_lease(path)
        time.sleep(0.3)
        later = read_lease(path)  # the lock file stays as taken; renewals go to its beat file
    assert first is not None and later is not None
    assert later.token == first.token and later.renewed > first.renewed


# -- another host ---------------------------------------------------------------------------
def test_an_expired_lease_of_another_host_is_taken_over(tmp_path: Path) -> None:
    stale = _lease(renewed=time.time() - 3600, heartbeat_s=0.1, lease_s=1.0)
    _plant(tmp_path, stale)
    messages: list[str] = []
    with volume_lock(Layout(tmp_path), on_wait=messages.append, timeout=5, poll=0.02):
        held = Lease.parse(Layout(tmp_path).volume_lock.read_text())
        assert held is not None and held.pid == os.getpid()
    assert any("taking over" in m and "pid 4242 on host pod-b" in m for m in messages)


def test_a_live_lease_of_another_host_is_waited_on_until_it_stops_renewing(
    tmp_path: Path,
) -> None:
    path = _plant(tmp_path, _lease(renewed=time.time(), heartbeat_s=0.1, lease_s=0.5))
    renewing = threading.Event()
    renewing.set()

    def heartbeat() -> None:  # the other pod, alive: renews well within its lease
        while renewing.is_set():
            path.write_text(_lease(renewed=time.time(), heartbeat_s=0.1, lease_s=0.5).to_text())
            time.sleep(0.1)

    beat = threading.Thread(target=heartbeat, daemon=True)
    beat.start()
    messages: list[str] = []
    with pytest.raises(StateError, match="pid 4242 on host pod-b"), volume_lock(
        Layout(tmp_path), on_wait=messages.append, timeout=2.0, poll=0.02
    ):
        pass
    assert messages and messages[0].startswith(
        "waiting for another phoenix apply on this volume (pid 4242 on host pod-b, renewed"
    )
    renewing.clear()  # the other pod dies: its lease runs out, and then it is taken over
    beat.join()
    started = time.monotonic()
    with volume_lock(Layout(tmp_path), timeout=5, poll=0.02):
        waited = time.monotonic() - started
    assert waited >= 0.2  # two of its heartbeats watched unchanged, at least


def test_a_skewed_clock_cannot_steal_a_renewing_lease(tmp_path: Path) -> None:
    """The other host's clock is an hour behind: its lease looks expired, yet it changes."""
    skew = 3600.0
    path = _plant(tmp_path, _lease(renewed=time.time() - skew, heartbeat_s=0.1, lease_s=0.5))
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.is_set():
            path.write_text(
                _lease(renewed=time.time() - skew, heartbeat_s=0.1, lease_s=0.5).to_text()
            )
            time.sleep(0.05)

    beat = threading.Thread(target=heartbeat, daemon=True)
    beat.start()
    try:
        with pytest.raises(StateError, match="still holds"), volume_lock(
            Layout(tmp_path), timeout=1.0, poll=0.02
        ):
            pass
    finally:
        stop.set()
        beat.join()


def test_a_holder_whose_lease_was_taken_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = Layout(tmp_path).volume_lock
    with pytest.raises(LockLostError, match="now held by pid 4242 on host pod-b"), volume_lock(
        Layout(tmp_path), heartbeat_s=0.05
    ):
        path.write_text(_lease().to_text())  # as if another pod took it while we were frozen
        time.sleep(0.3)
    assert "the volume lock was taken over (now held by pid 4242 on host pod-b" in caplog.text
    assert Lease.parse(path.read_text()) == _lease()  # and ours did not remove theirs

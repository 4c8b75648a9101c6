"""The volume lock: one ``phoenix apply`` at a time per workspace root, across pods and hosts.

Pods on one network volume (a RunPod network volume, a Kubernetes ReadWriteMany PVC) may run on
different hosts, where a kernel ``flock`` is not shared (or not supported) by the network
filesystem, and where a pid says nothing. So the lock is a *lease file*, ``.phoenix/lock``
(the record and its judge are :mod:`provisioner.state.lease`). Its rules:

* **taken** by hard-linking a fully written temp file to that name (``link`` fails if the name
  exists, atomically, on local filesystems and on NFS alike), so a reader never sees half a
  lease. Once there, the file is never rewritten: it names one holder (its random token) until
  it is removed;
* **renewed** in a file of the holder's own, ``lock.<token>.beat`` (temp file + rename, every
  ``heartbeat_s``), which nobody else writes, so a late renewal can never overwrite the lease of
  the next holder;
* **removed**, by its holder (release) or by a waiter that judged it stale (take-over), only
  by whoever first creates the *claim* ``lock.<token>.next`` (``link`` again: exactly one
  wins), and only after re-reading that the lock still holds that token. Nobody else removes
  or writes the name while it exists, so the re-read stays true until the removal: two
  removers of one lease, and so two holders, cannot happen. A claim left by a claimant that
  died is itself judged and removed the same way, one level up;
* **fenced**: the holder checks before each effect of the apply (the guard
  :meth:`VolumeLock.check`, and every heartbeat) that the lock still holds its token and that
  nobody claimed it; if not, :class:`LockLostError` stops the apply before that effect. This
  covers what no rule can exclude: a holder frozen past its lease (a stopped VM) that wakes
  after another pod took over.

A waiter judges the holder with :func:`judge`: on the *same host* (hostname, boot id and pid
namespace equal) a dead or reused pid frees the lease at once, so ``kill -9`` costs nothing; a
holder on *another host* is presumed dead only when its lease expired by the wall clock **and**
the waiter watched it stay unchanged for two heartbeats of its own monotonic clock (so a skewed
clock on either host cannot steal a live lease). docs/scale.md says why the lock covers a
whole apply.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from provisioner.core.errors import LockLostError, StateError
from provisioner.core.layout import Layout
from provisioner.state.lease import (
    HEARTBEAT_S,
    LEASE_S,
    HostId,
    Lease,
    judge,
    key_of,
    new_lease,
    pid_alive,
    process_start,
    renewed,
    this_host,
)
from provisioner.state.lease_files import (
    Claimer,
    Watch,
    beat_path,
    claim_path,
    link_new,
    read_lease,
    read_text,
)

__all__ = [
    "HEARTBEAT_S",
    "LEASE_S",
    "HostId",
    "Lease",
    "VolumeLock",
    "judge",
    "process_start",
    "read_lease",
    "this_host",
    "volume_lock",
]

log = logging.getLogger("phoenix.lock")

#: How often a waiter repeats its message.
REMIND_EVERY_S = 60.0


class VolumeLock:
    """This process's lease: takes, renews (in a thread), checks and releases it."""

    def __init__(self, path: Path, lease_s: float, heartbeat_s: float) -> None:
        self.path = path
        self.lease = new_lease(lease_s, heartbeat_s)
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.claimer = Claimer(self.lease, this_host())

    def _temp(self, suffix: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{self.lease.token}.{suffix}")

    def try_take(self) -> bool:
        """Create the lock file with this lease; False if the name exists."""
        if not link_new(self.path, self.lease.to_text(), self._temp("new")):
            return False
        self._sweep()
        return True

    def _sweep(self) -> None:
        """Remove renewals and claims of earlier holders: nobody can need them any more."""
        prefix, mine = f"{self.path.name}.", f".{self.lease.token}."
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.path.parent):
                name = entry.name
                ours = name.startswith(prefix) and name.endswith((".beat", ".next"))
                if ours and mine not in name:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def _why_not_mine(self) -> str | None:
        """None while the lock is this holder's and unclaimed, else what happened."""
        text = read_text(self.path)
        if text is not None and key_of(text) == self.lease.token:
            if not claim_path(self.path, self.lease.token).exists():
                return None
            claimant = Lease.parse(read_text(claim_path(self.path, self.lease.token)) or "")
            who = claimant.describe(time.time()) if claimant else "another apply"
            return f"the volume lock is being taken over by {who}, who judged this apply gone"
        current = read_lease(self.path)
        who = current.describe(time.time()) if current else "nobody"
        return f"the volume lock was taken over (now held by {who})"

    def check(self) -> None:
        """Raise :class:`LockLostError` unless the lock is still this apply's (the fence)."""
        if self.lost is None:
            try:
                self.lost = self._why_not_mine()
            except OSError as exc:
                log.warning("cannot read the volume lock: %s", exc.strerror or exc)
        if self.lost is not None:
            raise LockLostError(
                f"{self.lost}; this apply stopped before its next change",
                where=str(self.path),
                hint="another phoenix apply may be working on this volume now: let it finish, "
                "then rerun this one (it resumes; nothing half-written was placed). If this "
                "pod was frozen or cut off from the volume, check its clock and network",
            )

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="volume-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        beat = beat_path(self.path, self.lease.token)
        while not self._stop.wait(self.lease.heartbeat_s):
            try:
                why = self._why_not_mine()
                if why is not None:
                    self.lost = why
                    log.warning("%s; this apply stops before its next change", why)
                    with contextlib.suppress(OSError):
                        os.unlink(beat)
                    return
                self.lease = renewed(self.lease, time.time())
                tmp = self._temp("renew")
                tmp.write_text(self.lease.to_text(), encoding="utf-8")
                os.replace(tmp, beat)
            except OSError as exc:  # a flaky network volume: try again at the next beat
                log.warning("cannot renew the volume lock: %s", exc.strerror or exc)

    def release(self) -> None:
        """Stop renewing and remove the lock, through its claim, if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost is None:
            try:
                self.lost = self._why_not_mine()
                if self.lost is None and not self.claimer.remove(self.path, self.lease.token):
                    self.lost = self._why_not_mine() or "the volume lock was removed meanwhile"
            except OSError as exc:
                log.warning("cannot release the volume lock: %s", exc.strerror or exc)
        with contextlib.suppress(OSError):
            os.unlink(beat_path(self.path, self.lease.token))


def _legacy_free(path: Path) -> bool:
    """An older Phoenix's lock (pid inside, or empty after release) is free unless flocked."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@contextlib.contextmanager
def volume_lock(
    layout: Layout,
    *,
    on_wait: Callable[[str], None] | None = None,
    timeout: float | None = None,
    poll: float = 0.2,
    lease_s: float = LEASE_S,
    heartbeat_s: float = HEARTBEAT_S,
) -> Iterator[VolumeLock]:
    """Hold the volume lock for the ``with`` block, waiting (and saying whom for) while it is held.

    ``on_wait`` receives a human message when this process has to wait (once, then every
    minute) and when it takes over a dead holder's lease. ``timeout`` (seconds, ``None`` =
    forever) bounds the wait with a :class:`StateError`. The block gets the
    :class:`VolumeLock`, whose :meth:`~VolumeLock.check` it calls before each effect; leaving
    the block raises :class:`LockLostError` if the lock was lost meanwhile.
    """
    path = layout.volume_lock
    try:
        layout.phoenix.mkdir(parents=True, exist_ok=True, mode=0o700)
        holder = VolumeLock(path, lease_s, heartbeat_s)
        _acquire(holder, on_wait or (lambda _m: None), timeout, poll)
    except OSError as exc:
        raise StateError(
            f"cannot take the volume lock: {exc.strerror or exc}",
            where=str(path),
            hint="the workspace root must be a folder Phoenix can write (--root, PHOENIX_ROOT)",
        ) from exc
    holder.start_heartbeat()
    try:
        yield holder
    except BaseException:
        holder.release()
        raise
    holder.release()
    if holder.lost is not None:
        holder.check()


def _acquire(
    holder: VolumeLock, note: Callable[[str], None], timeout: float | None, poll: float
) -> None:
    path, me = holder.path, this_host()
    started = time.monotonic()
    next_note = started
    watch = Watch()
    while not holder.try_take():
        text = read_text(path)
        if text is None:
            continue  # released meanwhile: try again at once
        current = read_lease(path)
        now, mono = time.time(), time.monotonic()
        # the lease and its renewal: a live holder changes this every heartbeat
        unchanged = watch.unchanged_for(text + (current.to_text() if current else ""), mono)
        if current is None:
            who = "an older phoenix or an unreadable lease"
            # an older release leaves an empty file; a lease being written appears whole (link)
            if _legacy_free(path) and (text.strip() == "" or unchanged >= LEASE_S):
                holder.claimer.remove(path, key_of(text))
                continue
        else:
            who = current.describe(now)
            verdict = judge(current, me, now, alive=pid_alive)
            if verdict == "dead" or (
                verdict == "expired" and unchanged >= 2 * current.heartbeat_s
            ):
                if holder.claimer.remove(path, current.token):
                    note(f"taking over the volume lock of a holder that is gone ({who})")
                continue
        if timeout is not None and mono - started >= timeout:
            raise StateError(
                f"another phoenix apply ({who}) still holds the volume lock after {timeout:.0f} s",
                where=str(path),
                hint="wait for it to finish, or stop it; a holder on another host that died "
                f"is taken over {LEASE_S:.0f} s after its last renewal",
            )
        if mono >= next_note:
            note(f"waiting for another phoenix apply on this volume ({who})...")
            next_note = mono + REMIND_EVERY_S
        time.sleep(poll)

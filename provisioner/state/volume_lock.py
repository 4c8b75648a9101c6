"""The volume lock: one ``phoenix apply`` at a time per workspace root, across pods and hosts.

Pods on one network volume (a RunPod network volume, a Kubernetes ReadWriteMany PVC) may run on
different hosts, where a kernel ``flock`` is not shared (or not supported) by the network
filesystem, and where a pid says nothing. So the lock is a *lease file*, ``.phoenix/lock``:

* **taken** by hard-linking a fully written temp file to that name (``link`` fails if the name
  exists, atomically, on local filesystems and on NFS alike), so a reader never sees half a lease;
* **held** by a heartbeat thread that rewrites the lease (temp file + rename) every
  ``heartbeat_s``, after checking that it is still its own;
* **released** by unlinking it, only if it is still its own.

A waiter judges the holder with :func:`judge` (pure): on the *same host* (hostname, boot id and
pid namespace equal) a dead or reused pid frees the lease at once, so ``kill -9`` costs nothing;
a holder on *another host* is presumed dead only when its lease expired by the wall clock **and**
the waiter watched the file stay unchanged for two heartbeats of its own monotonic clock (so a
skewed clock on either host cannot steal a live lease). Takeover renames the stale file aside
and checks it moved what it judged; see docs/scale.md for why the lock covers a whole apply.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from provisioner.core.errors import StateError
from provisioner.core.layout import Layout

log = logging.getLogger("phoenix.lock")

#: How often a waiter repeats its message.
REMIND_EVERY_S = 60.0
#: A holder renews its lease this often...
HEARTBEAT_S = 5.0
#: ...and another host may presume it dead this long after the last renewal.
LEASE_S = 30.0
LEASE_VERSION = 1

Verdict = Literal["live", "dead", "expired"]


@dataclass(frozen=True)
class HostId:
    """What tells two holders apart: one kernel boot (``boot_id``), one hostname, one pid space.

    Two containers on one node share the boot id but neither the hostname nor the pid
    namespace; two pods on two nodes share neither boot id nor hostname.
    """

    hostname: str
    boot_id: str
    pid_ns: str


def this_host() -> HostId:
    """This process's :class:`HostId`.

    From ``/proc/sys/kernel/random/boot_id`` and ``/proc/self/ns/pid``.
    """
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        boot_id = ""
    try:
        pid_ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pid_ns = ""
    return HostId(socket.gethostname(), boot_id, pid_ns)


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot, ``/proc/<pid>/stat`` field 22), or None.

    Together with the pid it names one process: a pid reused after a reboot or a wrap differs.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    rest = raw.rsplit(")", 1)[-1].split()
    return rest[19] if len(rest) > 19 else None


@dataclass(frozen=True)
class Lease:
    """The content of ``.phoenix/lock`` while someone holds it (JSON on disk)."""

    token: str
    hostname: str
    boot_id: str
    pid_ns: str
    pid: int
    pid_start: str | None
    acquired: float
    renewed: float
    lease_s: float
    heartbeat_s: float

    @property
    def host(self) -> HostId:
        return HostId(self.hostname, self.boot_id, self.pid_ns)

    def describe(self, now: float) -> str:
        """``pid 12 on host pod-a, renewed 3 s ago`` for messages."""
        age = max(0.0, now - self.renewed)
        return f"pid {self.pid} on host {self.hostname or '?'}, renewed {age:.0f} s ago"

    def to_text(self) -> str:
        return json.dumps({"version": LEASE_VERSION, **asdict(self)}, sort_keys=True) + "\n"

    @classmethod
    def parse(cls, text: str) -> Lease | None:
        """The lease in ``text``, or None when it is not one (empty, an older format, garbage)."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != LEASE_VERSION:
                return None
            lease = cls(
                token=str(data["token"]),
                hostname=str(data["hostname"]),
                boot_id=str(data["boot_id"]),
                pid_ns=str(data["pid_ns"]),
                pid=int(data["pid"]),
                pid_start=None if data.get("pid_start") is None else str(data["pid_start"]),
                acquired=float(data["acquired"]),
                renewed=float(data["renewed"]),
                lease_s=float(data["lease_s"]),
                heartbeat_s=float(data["heartbeat_s"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        return lease if lease.lease_s > 0 and lease.heartbeat_s > 0 else None


def judge(
    lease: Lease,
    me: HostId,
    now: float,
    *,
    alive: Callable[[int], bool],
    start_of: Callable[[int], str | None] = process_start,
) -> Verdict:
    """Is the holder of ``lease`` alive, seen from host ``me`` at wall time ``now``?

    ``dead``: same host and the process is gone (or its pid now names another process).
    ``expired``: another host, and the lease ran out by the wall clock; the caller must still
    watch it stay unchanged before taking over (clocks of two hosts may disagree).
    ``live``: anything else.
    """
    if lease.host == me and me.boot_id:
        if not alive(lease.pid):
            return "dead"
        if lease.pid_start is not None and start_of(lease.pid) not in (None, lease.pid_start):
            return "dead"
        return "live"
    if now - lease.renewed > lease.lease_s:
        return "expired"
    return "live"


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists in this pid namespace (signal 0 probes without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    try:  # a zombie (killed, not yet reaped by its parent) holds nothing any more
        state = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        if state.rsplit(")", 1)[-1].split()[:1] == ["Z"]:
            return False
    except OSError:
        pass
    return pid > 0


class _Holder:
    """This process's lease: writes, renews (in a thread) and releases it."""

    def __init__(self, path: Path, lease_s: float, heartbeat_s: float) -> None:
        me = this_host()
        now = time.time()
        self.path = path
        self.lease = Lease(
            token=secrets.token_hex(16),
            hostname=me.hostname,
            boot_id=me.boot_id,
            pid_ns=me.pid_ns,
            pid=os.getpid(),
            pid_start=process_start(os.getpid()),
            acquired=now,
            renewed=now,
            lease_s=lease_s,
            heartbeat_s=heartbeat_s,
        )
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _temp(self, suffix: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{self.lease.token}.{suffix}")

    def _write_temp(self, suffix: str) -> Path:
        tmp = self._temp(suffix)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, self.lease.to_text().encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    def try_take(self) -> bool:
        """Create the lock file with this lease; False if the name exists."""
        tmp = self._write_temp("new")
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            return self._take_exclusive()  # a filesystem without hard links
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _take_exclusive(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        try:
            os.write(fd, self.lease.to_text().encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def mine(self) -> bool:
        lease = Lease.parse(_read(self.path))
        return lease is not None and lease.token == self.lease.token

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="volume-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease.heartbeat_s):
            try:
                if not self.mine():
                    current = Lease.parse(_read(self.path))
                    who = current.describe(time.time()) if current else "nobody"
                    self.lost = f"the volume lock was taken over (now held by {who})"
                    log.warning("%s; another apply may run at the same time", self.lost)
                    return
                self.lease = _renewed(self.lease, time.time())
                os.replace(self._write_temp("renew"), self.path)
            except OSError as exc:  # a flaky network volume: try again at the next beat
                log.warning("cannot renew the volume lock: %s", exc.strerror or exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(OSError):
            if self.mine():
                os.unlink(self.path)


def _renewed(lease: Lease, now: float) -> Lease:
    return Lease(**{**asdict(lease), "renewed": now})


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


@dataclass
class _Watch:
    """What a waiter saw last in the lock file, and since when (its own monotonic clock)."""

    text: str | None = None
    since: float = 0.0

    def unchanged_for(self, text: str, now: float) -> float:
        if text != self.text:
            self.text, self.since = text, now
        return now - self.since


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


def _take_over(path: Path, seen: str, token: str) -> bool:
    """Move the stale lease aside; if it changed meanwhile (a new holder), put it back.

    True when this process removed the lease it judged stale (only one waiter can: the rename
    is atomic), so exactly one of several waiters reports the takeover.
    """
    aside = path.with_name(f"{path.name}.{token}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False  # someone else moved or released it: the next round decides
    try:
        if _read(aside) != seen:
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
            return False
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(aside)


@contextlib.contextmanager
def volume_lock(
    layout: Layout,
    *,
    on_wait: Callable[[str], None] | None = None,
    timeout: float | None = None,
    poll: float = 0.2,
    lease_s: float = LEASE_S,
    heartbeat_s: float = HEARTBEAT_S,
) -> Iterator[None]:
    """Hold the volume lock for the ``with`` block, waiting (and saying whom for) while it is held.

    ``on_wait`` receives a human message when this process has to wait (once, then every
    minute) and when it takes over a dead holder's lease. ``timeout`` (seconds, ``None`` =
    forever) bounds the wait with a :class:`StateError`.
    """
    path = layout.volume_lock
    try:
        layout.phoenix.mkdir(parents=True, exist_ok=True, mode=0o700)
        holder = _Holder(path, lease_s, heartbeat_s)
        _acquire(holder, on_wait or (lambda _m: None), timeout, poll)
    except OSError as exc:
        raise StateError(
            f"cannot take the volume lock: {exc.strerror or exc}",
            where=str(path),
            hint="the workspace root must be a folder Phoenix can write (--root, PHOENIX_ROOT)",
        ) from exc
    holder.start_heartbeat()
    try:
        yield
    finally:
        holder.release()


def _acquire(
    holder: _Holder, note: Callable[[str], None], timeout: float | None, poll: float
) -> None:
    path, me = holder.path, this_host()
    started = time.monotonic()
    next_note = started
    watch = _Watch()
    while not holder.try_take():
        text = _read(path)
        now, mono = time.time(), time.monotonic()
        lease = Lease.parse(text)
        unchanged = watch.unchanged_for(text, mono)
        if lease is None:
            who = "an older phoenix or an unreadable lease"
            # an older release leaves an empty file; a lease being written appears whole (link)
            if _legacy_free(path) and (text.strip() == "" or unchanged >= LEASE_S):
                _take_over(path, text, holder.lease.token)
                continue
        else:
            who = lease.describe(now)
            verdict = judge(lease, me, now, alive=pid_alive)
            if verdict == "dead" or (
                verdict == "expired" and unchanged >= 2 * lease.heartbeat_s
            ):
                if _take_over(path, text, holder.lease.token):
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

"""The lease record of the volume lock, who holds it, and the judge of a holder (pure but /proc).

A :class:`Lease` is the JSON in ``.phoenix/lock`` (and, renewed, in its beat file); a
:class:`HostId` tells two holders apart; :func:`judge` decides from a lease alone whether its
holder is alive, seen from this host. The I/O (taking, renewing, releasing, taking over) is
:mod:`provisioner.state.volume_lock`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

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


def renewed(lease: Lease, now: float) -> Lease:
    """``lease`` renewed at wall time ``now``."""
    return Lease(**{**asdict(lease), "renewed": now})


def key_of(text: str) -> str:
    """What names the content of a lock file for a take-over: its token, or a digest of it.

    A take-over claims the right to remove the file holding *this* key; tokens are random and
    never reused, so a key names one lease for ever. Content that is no lease (an older
    Phoenix's pid file, an empty file) is named by its SHA256.
    """
    lease = Lease.parse(text)
    if lease is not None:
        return lease.token
    return "legacy-" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:32]


def new_lease(lease_s: float, heartbeat_s: float) -> Lease:
    """A fresh lease for this process, with a new random token."""
    me = this_host()
    now = time.time()
    return Lease(
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

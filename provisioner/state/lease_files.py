"""The lock's files on the volume: exclusive creation, renewals, and removal through a claim.

Every name here sits beside ``.phoenix/lock`` and is made of the lock's name, a key and a suffix:
``lock.<token>.beat`` (a holder's renewals), ``lock.<key>.next`` (the claim whose creator alone
may remove the file holding ``key``; see :mod:`provisioner.state.volume_lock` for the rules) and
temp files ``lock.<token>.<what>``. The record itself is :mod:`provisioner.state.lease`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.state.lease import LEASE_S, HostId, Lease, judge, key_of, pid_alive

log = logging.getLogger("phoenix.lock")

#: How many claims of claims a waiter follows before it waits another round.
_CLAIM_DEPTH = 2


def read_text(path: Path) -> str | None:
    """The text of ``path``, or None when there is no such file."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def beat_path(path: Path, token: str) -> Path:
    """Where the holder of ``token`` renews its lease."""
    return path.with_name(f"{path.name}.{token}.beat")


def claim_path(path: Path, key: str) -> Path:
    """The claim whose creator alone may remove ``path`` while it holds ``key``."""
    return path.with_name(f"{path.name}.{key}.next")


def read_lease(path: Path) -> Lease | None:
    """The lease in the lock file ``path`` with its latest renewal, or None (free, no lease)."""
    lease = Lease.parse(read_text(path) or "")
    if lease is None:
        return None
    beat = Lease.parse(read_text(beat_path(path, lease.token)) or "")
    return beat if beat is not None and beat.token == lease.token else lease


def _before_removal(path: Path) -> None:
    """Called after a claim was won and re-checked, before the removal (a seam for tests)."""


def link_new(target: Path, text: str, tmp: Path) -> bool:
    """Create ``target`` holding ``text``, whole, only if it does not exist; False if it does."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        return _create_exclusive(target, text)  # a filesystem without hard links
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _create_exclusive(target: Path, text: str) -> bool:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


@dataclass
class Watch:
    """What a waiter saw last in a file, and since when (its own monotonic clock)."""

    text: str | None = None
    since: float = 0.0

    def unchanged_for(self, text: str, now: float) -> float:
        if text != self.text:
            self.text, self.since = text, now
        return now - self.since


@dataclass
class Claimer:
    """Removes a file only through its claim (see the module docstring)."""

    me: Lease
    host: HostId
    #: what this waiter saw in each claim that is in its way, and since when
    watches: dict[Path, Watch] = field(default_factory=dict)

    def remove(self, path: Path, key: str, depth: int = 0) -> bool:
        """Remove ``path`` if it still holds ``key``; True if this call removed it."""
        claim = claim_path(path, key)
        tmp = path.with_name(f"{path.name}.{self.me.token}.claim{depth}")
        if not link_new(claim, self.me.to_text(), tmp):
            self._clear_stuck(claim, depth)
            return False
        try:
            text = read_text(path)
            if text is None or key_of(text) != key:
                return False  # removed (and maybe taken again) before this claim: not ours
            _before_removal(path)
            os.unlink(path)
            if not key.startswith("legacy-"):
                with contextlib.suppress(OSError):
                    os.unlink(beat_path(path, key))
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(claim)
            self.watches.pop(claim, None)

    def _clear_stuck(self, claim: Path, depth: int) -> None:
        """A claim in the way whose claimant died (same host) or went silent (another host)."""
        text = read_text(claim)
        if text is None or depth >= _CLAIM_DEPTH:
            return
        watch = self.watches.setdefault(claim, Watch())
        unchanged = watch.unchanged_for(text, time.monotonic())
        claimant = Lease.parse(text)
        if claimant is None:
            stale = unchanged >= LEASE_S
        else:
            verdict = judge(claimant, self.host, time.time(), alive=pid_alive)
            stale = verdict == "dead" or (
                verdict == "expired" and unchanged >= 2 * claimant.heartbeat_s
            )
        if stale and self.remove(claim, key_of(text), depth + 1):
            log.warning("removed the claim of a take-over that did not finish (%s)", claim.name)

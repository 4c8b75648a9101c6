"""The volume lock: one ``phoenix apply`` at a time per workspace root.

Two pods sharing a network volume (or two shells on one pod) take an advisory ``flock`` on
``.phoenix/lock``. The second one waits, saying whom it waits for, then proceeds and finds the
first one's files already in place (so each file is fetched once). The kernel drops the lock
when its holder dies, even on ``kill -9``; the pid written inside is only for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator

from provisioner.core.errors import StateError
from provisioner.core.layout import Layout

#: How often a waiter repeats its message.
REMIND_EVERY_S = 60.0


def _holder(fd: int) -> str:
    try:
        raw = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return raw if raw.isdigit() else "unknown"


@contextlib.contextmanager
def volume_lock(
    layout: Layout,
    *,
    on_wait: Callable[[str], None] | None = None,
    timeout: float | None = None,
    poll: float = 0.2,
) -> Iterator[None]:
    """Hold the volume lock for the ``with`` block, waiting (and saying so) while another holds it.

    ``on_wait`` receives a human message when this process has to wait (once, then every
    minute). ``timeout`` (seconds, ``None`` = forever) bounds the wait with a :class:`StateError`.
    """
    path = layout.volume_lock
    try:
        layout.phoenix.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateError(
            f"cannot open the volume lock: {exc.strerror}",
            where=str(path),
            hint="the workspace root must be a folder Phoenix can write (--root, PHOENIX_ROOT)",
        ) from exc
    try:
        _acquire(fd, on_wait, timeout, poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(
    fd: int, on_wait: Callable[[str], None] | None, timeout: float | None, poll: float
) -> None:
    started = time.monotonic()
    next_note = started
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        except OSError as exc:
            raise StateError(
                f"cannot lock the volume: {exc.strerror}",
                hint="the filesystem may not support flock; run one apply at a time",
            ) from exc
        now = time.monotonic()
        if timeout is not None and now - started >= timeout:
            raise StateError(
                f"another phoenix apply (pid {_holder(fd)}) still holds the volume lock "
                f"after {timeout:.0f} s",
                hint="wait for it to finish, or stop it",
            )
        if on_wait is not None and now >= next_note:
            on_wait(f"waiting for another phoenix apply on this volume (pid {_holder(fd)})...")
            next_note = now + REMIND_EVERY_S
        time.sleep(poll)

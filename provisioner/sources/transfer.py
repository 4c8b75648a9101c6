"""What one HTTP transfer and its segments share: failure kinds, status mapping, disk writes.

The single-stream engine (:mod:`provisioner.sources.download`) and the segmented one
(:mod:`provisioner.sources.segments`) read answers and write bytes the same way; this module is
that common ground, so a 401 or a 429 means the same thing on every connection.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import threading
from pathlib import Path

import requests

from provisioner.core.errors import AuthError, DiskSpaceError, DownloadError, NotFoundError
from provisioner.core.units import human_bytes
from provisioner.sources.http import RETRY_STATUSES, RetryPolicy

#: Bytes per read/hash/write step: large enough that per-chunk overhead vanishes.
CHUNK_SIZE = 4 * 1024 * 1024
#: Start writing dirty pages back every this many bytes (see :class:`Writeback`).
WRITEBACK_BYTES = 64 * 1024 * 1024
CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
UNSATISFIED_RANGE = re.compile(r"^bytes\s+\*/(\d+)$")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DownloadCancelled(DownloadError):
    """The transfer was stopped on request (Ctrl-C in a parallel run); the .part is kept."""


class Transient(Exception):
    """A failure worth another attempt, with the server's requested wait if any."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


def url_for_message(url: str) -> str:
    """``url`` without its query string (which might carry a signed token) for messages."""
    return url.split("?", 1)[0].split("#", 1)[0]


def raise_for_status(response: requests.Response, label: str, url: str, retry: RetryPolicy) -> None:
    """Map a final status to the user-facing error, :class:`Transient`, or nothing (200/206).

    416 is left to the caller (its meaning depends on the range asked for).
    """
    status = response.status_code
    where = url_for_message(url)
    if status in (401, 403):
        raise AuthError(
            f"access denied (HTTP {status}) downloading {label}",
            where=where,
            hint="check that the token for this host is set and allows this download",
        )
    if status in (404, 410):
        raise NotFoundError(f"not found (HTTP {status}) downloading {label}", where=where)
    if status in RETRY_STATUSES:
        retry_after = response.headers.get("Retry-After")
        raise Transient(
            f"HTTP {status}", wait=retry.wait_for(1, retry_after) if retry_after else None
        )
    if status not in (200, 206, 416):
        raise DownloadError(f"HTTP {status} downloading {label}", where=where)


def check_free_space(path: Path, needed_bytes: int, what: str) -> None:
    """Raise :class:`DiskSpaceError` unless the filesystem of ``path`` has ``needed_bytes`` free.

    ``path`` may not exist yet; its nearest existing ancestor is measured.
    """
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed_bytes > free:
        raise DiskSpaceError(
            f"not enough free space for {what}: need {human_bytes(needed_bytes)}, "
            f"only {human_bytes(free)} free",
            where=str(path),
            hint="free space on the volume, use a larger volume, or remove models from the "
            "manifest",
        )


def validator_of(response: requests.Response) -> str | None:
    """The strong ETag, else Last-Modified: what ``If-Range`` may carry to guard a resume."""
    validator = response.headers.get("ETag")
    if not validator or validator.startswith("W/"):
        validator = response.headers.get("Last-Modified")
    return validator or None


def disk_full_error(label: str, where: str) -> DiskSpaceError:
    """The error for ENOSPC/EDQUOT mid-transfer (the caller removes the partial file)."""
    return DiskSpaceError(
        f"disk full while downloading {label}; the partial file was removed",
        where=where,
        hint="free space on the volume or use a larger one, then run again",
    )


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (``os.pwrite`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


class Writeback:
    """Flush a file's dirty pages to disk while it is still being written.

    Without it the kernel keeps a whole multi-GiB download dirty in the page cache (its
    background threshold is a share of RAM) and the final ``fsync`` writes it all at once, after
    the network is done: transfer time plus disk time. A thread here calls ``fdatasync`` each
    time :data:`WRITEBACK_BYTES` more were written, so the disk works during the transfer and
    the final ``fsync`` only has the tail left. A write error it sees is raised by
    :meth:`close` (the kernel reports it once, so the final fsync might not see it again).
    """

    def __init__(self, fd: int, every: int | None = None) -> None:
        self._fd = fd
        self._every = every or WRITEBACK_BYTES
        self._pending = 0
        self._closed = False
        self._error: OSError | None = None
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True, name="writeback")
        self._thread.start()

    def wrote(self, nbytes: int) -> None:
        """``nbytes`` more were written to the file (thread-safe)."""
        with self._wake:
            self._pending += nbytes
            if self._pending >= self._every:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._closed or self._pending >= self._every)
                if self._closed:
                    return
                self._pending = 0
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                with self._wake:
                    self._error = self._error or exc
                    self._closed = True
                return

    def close(self) -> None:
        """Stop the thread; raise the first write error it met."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()
        if self._error is not None:
            raise self._error

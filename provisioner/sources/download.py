"""The download engine: verified, resumable, atomic transfers over HTTP(S).

One transfer streams into ``<staging>/<key>.part`` (``key`` = the expected SHA256, or a hash of
the URL), hashing in the same pass. Interrupted transfers resume with ``Range`` (guarded by
``If-Range`` with the validator of the first response); a server that ignores the range, or a
file that changed, restarts cleanly from byte 0. Transient failures (5xx, 429 with
``Retry-After``, resets, timeouts) are retried with backoff. Only after the SHA256 matched is
the file fsynced and renamed into place, so ComfyUI never sees a partial or unverified file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3.exceptions

from provisioner.core.errors import (
    AuthError,
    DiskSpaceError,
    DownloadError,
    IntegrityError,
    NotFoundError,
    PhoenixError,
)
from provisioner.core.fsio import atomic_write_json
from provisioner.core.units import human_bytes
from provisioner.sources.http import DEFAULT_RETRY, RETRY_STATUSES, RetryPolicy
from provisioner.sources.placement import place
from provisioner.sources.progress import Progress, ProgressTask

logger = logging.getLogger("phoenix.download")

#: Bytes per read/hash/write step: large enough that per-chunk overhead vanishes.
CHUNK_SIZE = 4 * 1024 * 1024
#: Chunks read ahead of the hash-and-write thread.
_QUEUE_DEPTH = 4
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes\s+\*/(\d+)$")
_NO_HEADERS: Mapping[str, str] = {}


@dataclass(frozen=True)
class DownloadResult:
    """A verified file in place: its path, SHA256, size, and the bytes this call transferred."""

    path: Path
    sha256: str
    size: int
    bytes_transferred: int


@dataclass(frozen=True)
class DownloadTask:
    """The arguments of one :func:`download`, for :func:`download_all`."""

    url: str
    dest: Path
    staging: Path
    expected_sha256: str | None
    session: requests.Session
    headers: Mapping[str, str] = field(default_factory=dict)
    expected_size: int | None = None
    label: str = ""
    auth: requests.auth.AuthBase | None = None


@dataclass(frozen=True)
class DownloadOutcome:
    """What became of one task: a result, or the user-facing error that stopped it."""

    task: DownloadTask
    result: DownloadResult | None
    error: PhoenixError | None


class DownloadCancelled(DownloadError):
    """The transfer was stopped on request (Ctrl-C in a parallel run); the .part is kept."""


class _Transient(Exception):
    """A failure worth another attempt, with the server's requested wait if any."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class _Complete(Exception):
    """The staging file already holds the whole body (416 with a matching length)."""


def staging_name(url: str, expected_sha256: str | None) -> str:
    """The ``.part`` file name: the expected SHA256, else a SHA256 of the URL.

    Different files never share a name; the same file from two URLs (mirrors) shares one.
    """
    if expected_sha256:
        return f"{expected_sha256.lower()}.part"
    return f"url-{hashlib.sha256(url.encode('utf-8')).hexdigest()}.part"


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


def download(
    url: str,
    dest: Path,
    *,
    staging: Path,
    expected_sha256: str | None,
    session: requests.Session,
    headers: Mapping[str, str] = _NO_HEADERS,
    expected_size: int | None = None,
    progress: Progress | None = None,
    label: str = "",
    auth: requests.auth.AuthBase | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    sleep: Callable[[float], None] = time.sleep,
    cancel: threading.Event | None = None,
) -> DownloadResult:
    """Fetch ``url`` into ``dest`` through a staging file, verified against ``expected_sha256``.

    ``expected_size`` (bytes, may be approximate) drives the disk-space preflight and the
    progress total; the server's length is authoritative. ``auth`` overrides the session's
    auth for this transfer (e.g. :class:`~provisioner.sources.http.NoAuth`).

    Raises :class:`IntegrityError` on a hash mismatch (nothing placed, staging removed),
    :class:`DiskSpaceError` before the first byte or on ENOSPC (staging removed),
    :class:`AuthError` / :class:`NotFoundError` for 401/403 / 404, and
    :class:`DownloadError` when the retries are exhausted (the ``.part`` is kept to resume).
    """
    label = label or dest.name
    expected = expected_sha256.lower() if expected_sha256 else None
    part = staging / staging_name(url, expected)
    try:
        staging.mkdir(parents=True, exist_ok=True)
        if expected_size is not None:  # before any byte (or request): refuse what cannot fit
            try:
                kept = part.stat().st_size
            except FileNotFoundError:
                kept = 0
            check_free_space(staging, max(0, expected_size - kept), label)
        with _locked_part(part, label) as fd:
            transfer = _Transfer(
                url=url,
                fd=fd,
                part=part,
                label=label,
                session=session,
                headers=headers,
                auth=auth,
                retry=retry,
                cancel=cancel,
            )
            transfer.load_validator()
            transfer.task = progress.task(label, expected_size, 0) if progress else None
            ok = False
            try:
                digest = _fetch_verified(transfer, expected, sleep)
                size = transfer.offset
                _fsync_or_disk_error(fd, transfer)
                place(part, dest)
                transfer.drop_validator()
                ok = True
            finally:
                if not ok and os.fstat(fd).st_size == 0:
                    transfer.discard()  # an empty .part (404, 401, no byte yet) resumes nothing
                if transfer.task is not None:
                    transfer.task.close(ok)
    except OSError as exc:
        if isinstance(exc, requests.RequestException):
            raise DownloadError(
                f"cannot download {label}: {type(exc).__name__}", where=url_for_message(url)
            ) from None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            with contextlib.suppress(OSError):
                os.unlink(part)
            raise DiskSpaceError(
                f"disk full while downloading {label}; the partial file was removed",
                where=str(staging),
                hint="free space on the volume or use a larger one, then run again",
            ) from None
        raise DownloadError(
            f"cannot write {label}: {exc.strerror or exc}",
            where=str(exc.filename or dest),
            hint="check that the models folder and .phoenix/staging are writable",
        ) from None
    return DownloadResult(dest, digest, size, transfer.transferred)


def _fetch_verified(
    transfer: _Transfer, expected: str | None, sleep: Callable[[float], None]
) -> str:
    """Stream to the end (resuming what is kept) and return the SHA256, which must match."""
    transfer.resume_prefix()
    _run_with_retries(transfer, transfer.retry, sleep)
    digest: str = transfer.hasher.hexdigest()
    if expected and digest != expected and transfer.resumed_from > 0:
        # The kept prefix may be from another file: one clean full download decides.
        transfer.restart_from_zero()
        _run_with_retries(transfer, transfer.retry, sleep)
        digest = transfer.hasher.hexdigest()
    if expected and digest != expected:
        transfer.discard()
        raise IntegrityError(
            f"SHA256 mismatch for {transfer.label}: expected {expected}, got {digest}; "
            "nothing was placed",
            where=url_for_message(transfer.url),
            hint="the source changed or is corrupt; check the model's page, or update "
            "the pinned sha256 / lock file if the new file is trusted",
        )
    return digest


def url_for_message(url: str) -> str:
    """``url`` without its query string (which might carry a signed token) for messages."""
    return url.split("?", 1)[0].split("#", 1)[0]


def _run_with_retries(
    transfer: _Transfer, retry: RetryPolicy, sleep: Callable[[float], None]
) -> None:
    failures = 0
    while True:
        before = transfer.transferred
        try:
            transfer.fetch()
            return
        except _Complete:
            return
        except _Transient as exc:
            if transfer.transferred > before:
                failures = 0  # progress was made: a flaky link is not a dead one
            failures += 1
            if failures >= retry.attempts:
                raise DownloadError(
                    f"download of {transfer.label} failed after {retry.attempts} attempts: "
                    f"{exc.reason}",
                    where=url_for_message(transfer.url),
                    hint="the partial file is kept; run again to resume",
                ) from None
            wait = exc.wait if exc.wait is not None else retry.backoff(failures)
            sleep(wait)


@contextlib.contextmanager
def _locked_part(part: Path, label: str) -> Iterator[int]:
    """Open ``part`` and hold an exclusive flock on it (other threads and processes wait).

    If the holder renamed the file into place meanwhile, the lock is taken again on a fresh file.
    """
    while True:
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("%s: another download of the same file is running; waiting", label)
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(part).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


def _fsync_or_disk_error(fd: int, transfer: _Transfer) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            transfer.discard()
            raise transfer.disk_full() from None
        raise


@dataclass
class _Transfer:
    """Mutable state of one transfer: the staging fd, the running hash, and the validator."""

    url: str
    fd: int
    part: Path
    label: str
    session: requests.Session
    headers: Mapping[str, str]
    auth: requests.auth.AuthBase | None
    retry: RetryPolicy
    cancel: threading.Event | None
    task: ProgressTask | None = None
    hasher: Any = field(default_factory=hashlib.sha256)
    offset: int = 0
    resumed_from: int = 0
    total: int | None = None
    validator: str | None = None
    transferred: int = 0

    @property
    def meta_path(self) -> Path:
        return self.part.with_name(self.part.name + ".json")

    def load_validator(self) -> None:
        """The ETag/Last-Modified the kept prefix came with, if it came from this URL."""
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(meta, dict) and meta.get("url") == self.url:
            validator = meta.get("validator")
            self.validator = validator if isinstance(validator, str) else None

    def save_validator(self, validator: str | None, total: int | None) -> None:
        if validator != self.validator:
            self.validator = validator
            atomic_write_json(
                self.meta_path, {"url": self.url, "validator": validator, "total": total}
            )

    def drop_validator(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.meta_path)

    def resume_prefix(self) -> None:
        """Hash the bytes already in the staging file, once, before continuing after them."""
        size = os.fstat(self.fd).st_size
        os.lseek(self.fd, 0, os.SEEK_SET)
        remaining = size
        while remaining:
            block = os.read(self.fd, min(CHUNK_SIZE, remaining))
            if not block:
                break
            self.hasher.update(block)
            remaining -= len(block)
        self.offset = self.resumed_from = size - remaining
        if self.task is not None:
            self.task.restart(self.offset, self.total)

    def restart_from_zero(self) -> None:
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.hasher = hashlib.sha256()
        self.offset = self.resumed_from = 0
        self.validator = None
        if self.task is not None:
            self.task.restart(0, self.total)

    def discard(self) -> None:
        """Remove the staging file and its sidecar (the fd stays valid until closed)."""
        for path in (self.part, self.meta_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def disk_full(self) -> DiskSpaceError:
        return DiskSpaceError(
            f"disk full while downloading {self.label}; the partial file was removed",
            where=str(self.part.parent),
            hint="free space on the volume or use a larger one, then run again",
        )

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        headers["Accept-Encoding"] = "identity"  # byte ranges of the file itself
        if self.offset > 0:
            headers["Range"] = f"bytes={self.offset}-"
            if self.validator:
                headers["If-Range"] = self.validator
        return headers

    def fetch(self) -> None:
        """One attempt: request from ``offset``, stream to the end, or raise _Transient."""
        try:
            response = self.session.get(
                self.url,
                headers=self.request_headers(),
                stream=True,
                timeout=self.retry.timeout,
                auth=self.auth,
            )
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise _Transient(f"connection failed: {type(exc).__name__}") from None
        except requests.RequestException as exc:  # bad URL, redirect loop: not transient
            raise DownloadError(
                f"cannot download {self.label}: {type(exc).__name__}",
                where=url_for_message(self.url),
            ) from None
        with response:
            self._check_status(response)
            self._stream(response)

    def _check_status(self, response: requests.Response) -> None:
        status = response.status_code
        where = url_for_message(self.url)
        if status in (401, 403):
            raise AuthError(
                f"access denied (HTTP {status}) downloading {self.label}",
                where=where,
                hint="check that the token for this host is set and allows this download",
            )
        if status in (404, 410):
            raise NotFoundError(f"not found (HTTP {status}) downloading {self.label}", where=where)
        if status == 416 and self.offset > 0:
            match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
            if match and int(match.group(1)) == self.offset:
                raise _Complete
            self.restart_from_zero()
            raise _Transient("range not satisfiable; restarting from 0", wait=0.0)
        if status in RETRY_STATUSES:
            raise _Transient(
                f"HTTP {status}",
                wait=self.retry.wait_for(1, response.headers.get("Retry-After"))
                if response.headers.get("Retry-After")
                else None,
            )
        if status not in (200, 206):
            raise DownloadError(f"HTTP {status} downloading {self.label}", where=where)

    def _stream(self, response: requests.Response) -> None:
        total = self._position_for(response)
        if total is not None:
            check_free_space(self.part.parent, total - self.offset, self.label)
        validator = response.headers.get("ETag")
        if not validator or validator.startswith("W/"):
            validator = response.headers.get("Last-Modified")
        self.save_validator(validator, total)
        self.total = total
        if self.task is not None:
            self.task.restart(self.offset, total)
        self._copy(response)
        if total is not None and self.offset != total:
            raise _Transient(f"connection closed at {self.offset} of {total} bytes")

    def _position_for(self, response: requests.Response) -> int | None:
        """Align the staging file with what the server sends; return the full size if known."""
        if response.status_code == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != self.offset:
                self.restart_from_zero()
                raise _Transient("server answered a different range; restarting from 0", wait=0.0)
            return None if match.group(3) == "*" else int(match.group(3))
        if self.offset > 0:
            # 200 to a Range request: the server ignored it or the file changed (If-Range).
            self.restart_from_zero()
        length = response.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else None

    def _copy(self, response: requests.Response) -> None:
        """Read on this thread; hash on one worker and write on another, all overlapped.

        hashlib, ``os.write`` and socket reads release the GIL, so a transfer runs at the speed
        of its slowest stage instead of the sum of all three. Both workers see every block the
        reader produced, so after a lost connection the hash still matches the bytes on disk.
        """
        to_hash: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_DEPTH)
        to_write: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_DEPTH)
        failure: list[BaseException] = []
        workers = [
            threading.Thread(
                target=self._hash_blocks, args=(to_hash,), daemon=True, name=f"hash:{self.label}"
            ),
            threading.Thread(
                target=self._write_blocks,
                args=(to_write, failure),
                daemon=True,
                name=f"write:{self.label}",
            ),
        ]
        for worker in workers:
            worker.start()
        raw = response.raw
        try:
            while not failure:
                if self.cancel is not None and self.cancel.is_set():
                    raise DownloadCancelled(f"download of {self.label} cancelled")
                try:
                    block = raw.read(CHUNK_SIZE)
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    raise _Transient(f"connection lost: {type(exc).__name__}") from None
                if not block:
                    break
                to_hash.put(block)
                to_write.put(block)
        finally:
            to_hash.put(None)
            to_write.put(None)
            for worker in workers:
                worker.join()
        if failure:
            raise failure[0]

    def _hash_blocks(self, blocks: queue.Queue[bytes | None]) -> None:
        while (block := blocks.get()) is not None:
            self.hasher.update(block)

    def _write_blocks(
        self, blocks: queue.Queue[bytes | None], failure: list[BaseException]
    ) -> None:
        while (block := blocks.get()) is not None:
            if failure:
                continue  # drain so the reader never blocks
            try:
                view = memoryview(block)
                while view:
                    view = view[os.write(self.fd, view) :]
                self.offset += len(block)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    self.discard()
                    failure.append(self.disk_full())
                else:
                    failure.append(exc)
                continue
            except BaseException as exc:
                failure.append(exc)
                continue
            self.transferred += len(block)
            if self.task is not None:
                self.task.update(len(block))


def download_all(
    tasks: Sequence[DownloadTask],
    jobs: int,
    *,
    progress: Progress | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> list[DownloadOutcome]:
    """Run ``tasks`` on ``jobs`` threads; one outcome per task, in order.

    A task's user-facing failure is returned, not raised, so the other downloads go on.
    Ctrl-C cancels the remaining transfers (their ``.part`` files are kept for a resume).
    """
    cancel = threading.Event()

    def run(task: DownloadTask) -> DownloadOutcome:
        try:
            result = download(
                task.url,
                task.dest,
                staging=task.staging,
                expected_sha256=task.expected_sha256,
                session=task.session,
                headers=task.headers,
                expected_size=task.expected_size,
                progress=progress,
                label=task.label,
                auth=task.auth,
                retry=retry,
                cancel=cancel,
            )
        except PhoenixError as exc:
            return DownloadOutcome(task, None, exc)
        return DownloadOutcome(task, result, None)

    executor = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="download")
    try:
        futures = [executor.submit(run, task) for task in tasks]
        return [future.result() for future in futures]
    except BaseException:
        cancel.set()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)

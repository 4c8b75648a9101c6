"""The download engine: verified, resumable, atomic transfers over HTTP(S).

One transfer streams into ``<staging>/<key>.part`` (``key`` = the expected SHA256, or a hash of
the URL), hashing in the same pass. A large file from a server that honours ``Range`` is fetched
over several connections instead (:mod:`provisioner.sources.segments`; ``connections``).
Interrupted transfers resume with ``Range`` (guarded by ``If-Range`` with the validator of the
first response); a server that ignores the range, or a file that changed, restarts cleanly from
byte 0. Transient failures (5xx, 429 with ``Retry-After``, resets, timeouts) are retried with
backoff. Only after the SHA256 matched is the file fsynced and renamed into place, so ComfyUI
never sees a partial or unverified file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from provisioner.core.errors import DownloadError, PhoenixError
from provisioner.sources.http import DEFAULT_RETRY, RetryPolicy, host_key
from provisioner.sources.placement import place
from provisioner.sources.progress import Progress
from provisioner.sources.ranges import SegmentMap, done_prefix
from provisioner.sources.segments import (
    HOST_LIMITER,
    MIN_SEGMENTED_SIZE,
    FileChanged,
    HostLimiter,
    SegmentedFetch,
    probe,
)
from provisioner.sources.stream import StreamTransfer, fetch_verified, mismatch_error
from provisioner.sources.transfer import (
    CHUNK_SIZE,
    DISK_FULL,
    DownloadCancelled,
    check_free_space,
    disk_full_error,
    url_for_message,
)

logger = logging.getLogger("phoenix.download")

#: Chunks read ahead of the hash-and-write thread.
_QUEUE_DEPTH = 4
_NO_HEADERS: Mapping[str, str] = {}

__all__ = [
    "CHUNK_SIZE",
    "DownloadCancelled",
    "DownloadOutcome",
    "DownloadResult",
    "DownloadTask",
    "check_free_space",
    "download",
    "download_all",
    "staging_name",
    "url_for_message",
]


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
    connections: int = 1


@dataclass(frozen=True)
class DownloadOutcome:
    """What became of one task: a result, or the user-facing error that stopped it."""

    task: DownloadTask
    result: DownloadResult | None
    error: PhoenixError | None


def staging_name(url: str, expected_sha256: str | None) -> str:
    """The ``.part`` file name: the expected SHA256, else a SHA256 of the URL.

    Different files never share a name; the same file from two URLs (mirrors) shares one.
    """
    if expected_sha256:
        return f"{expected_sha256.lower()}.part"
    return f"url-{hashlib.sha256(url.encode('utf-8')).hexdigest()}.part"


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
    connections: int = 1,
    limiter: HostLimiter = HOST_LIMITER,
) -> DownloadResult:
    """Fetch ``url`` into ``dest`` through a staging file, verified against ``expected_sha256``.

    ``expected_size`` (bytes, may be approximate) drives the disk-space preflight and the
    progress total; the server's length is authoritative. ``auth`` overrides the session's
    auth for this transfer (e.g. :class:`~provisioner.sources.http.NoAuth`). With
    ``connections`` > 1 a file of at least :data:`MIN_SEGMENTED_SIZE` from a server that honours
    ranges is fetched over that many connections (``limiter`` caps them per host); anything
    else is one stream.

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
            check_free_space(staging, max(0, expected_size - _kept_bytes(part)), label)
        with _locked_part(part, label) as fd:
            transfer = StreamTransfer(
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
                wide = connections > 1 and (expected_size or MIN_SEGMENTED_SIZE) >= (
                    MIN_SEGMENTED_SIZE
                )
                segmented = _segmented(transfer, connections, limiter, sleep) if wide else None
                if segmented is None:
                    _single_stream_resume(transfer)
                    digest = fetch_verified(transfer, expected, sleep)
                    size, moved = transfer.offset, transfer.transferred
                else:
                    digest = _fetch_segmented(segmented, expected)
                    size, moved = segmented.support.total, segmented.transferred
                _fsync_or_disk_error(fd, transfer)
                place(part, dest)
                transfer.drop_validator()
                SegmentMap.drop(part)
                ok = True
            finally:
                transfer.close_first_response()
                if not ok and os.fstat(fd).st_size == 0:
                    transfer.discard()  # an empty .part (404, 401, no byte yet) resumes nothing
                if transfer.task is not None:
                    transfer.task.close(ok)
    except OSError as exc:
        if isinstance(exc, requests.RequestException):
            raise DownloadError(
                f"cannot download {label}: {type(exc).__name__}", where=url_for_message(url)
            ) from None
        if exc.errno in DISK_FULL:
            with contextlib.suppress(OSError):
                os.unlink(part)
            SegmentMap.drop(part)
            raise disk_full_error(label, str(staging)) from None
        raise DownloadError(
            f"cannot write {label}: {exc.strerror or exc}",
            where=str(exc.filename or dest),
            hint="check that the models folder and .phoenix/staging are writable",
        ) from None
    return DownloadResult(dest, digest, size, moved)


def _kept_bytes(part: Path) -> int:
    """Bytes a resume can keep: a segmented .part is full-size but only its map's ranges count."""
    kept = SegmentMap.load(part)
    if kept is not None:
        return sum(end - start for start, end in kept.done)
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0


def _segmented(
    transfer: StreamTransfer,
    connections: int,
    limiter: HostLimiter,
    sleep: Callable[[float], None],
) -> SegmentedFetch | None:
    """A prepared segmented fetch, or None when one stream it is.

    A ``.part`` left by a single stream (no map) resumes as a single stream. A probe decides
    the rest: no range support or a small file is one stream (a 200 to the probe is kept as
    that stream's first response, so nothing is asked twice).
    """
    if SegmentMap.load(transfer.part) is None and os.fstat(transfer.fd).st_size > 0:
        return None
    with limiter.slot(host_key(transfer.url)):
        support, response = probe(
            transfer.session, transfer.url, transfer.headers, transfer.auth, transfer.retry
        )
    if support is None or support.total < MIN_SEGMENTED_SIZE:
        transfer.first_response = response
        return None
    check_free_space(
        transfer.part.parent, support.total - _kept_bytes(transfer.part), transfer.label
    )
    fetch = SegmentedFetch(
        url=transfer.url,
        fd=transfer.fd,
        part=transfer.part,
        label=transfer.label,
        session=transfer.session,
        headers=transfer.headers,
        auth=transfer.auth,
        retry=transfer.retry,
        cancel=transfer.cancel,
        task=transfer.task,
        connections=connections,
        support=support,
        limiter=limiter,
        sleep=sleep,
    )
    fetch.prepare()
    return fetch


def _single_stream_resume(transfer: StreamTransfer) -> None:
    """A segmented .part continues as one stream: keep its finished prefix, drop its map."""
    kept = SegmentMap.load(transfer.part)
    if kept is None:
        return
    prefix = done_prefix(kept.done) if kept.url == transfer.url else 0
    os.ftruncate(transfer.fd, prefix)
    transfer.save_validator(kept.validator, kept.total)
    SegmentMap.drop(transfer.part)
    if transfer.first_response is not None and prefix > 0:
        transfer.close_first_response()  # it starts at 0; the resume asks from the prefix


def _fetch_segmented(fetch: SegmentedFetch, expected: str | None) -> str:
    """Run ``fetch``; redo it once from zero if the file changed or a kept range was bad."""
    for attempt in (1, 2):
        try:
            digest = fetch.run()
        except FileChanged:
            if attempt == 2:
                raise DownloadError(
                    f"the file behind the URL of {fetch.label} changed during the download",
                    where=url_for_message(fetch.url),
                    hint="run again; if it keeps changing, pin another source",
                ) from None
            fetch.prepare(fresh=True)
            continue
        if expected and digest != expected and fetch.resumed_from > 0 and attempt == 1:
            fetch.prepare(fresh=True)  # the kept ranges may be from another file
            continue
        break
    if expected and digest != expected:
        fetch.discard()
        raise mismatch_error(fetch.label, fetch.url, expected, digest)
    return digest


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


def _fsync_or_disk_error(fd: int, transfer: StreamTransfer) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            transfer.discard()
            raise transfer.disk_full() from None
        raise


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
                connections=task.connections,
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

"""One large file over several connections: Range requests into one pre-allocated staging file.

The file is cut into pieces of :data:`PIECE_SIZE`, handed out in file order to ``connections``
threads; each streams its piece with ``Range: bytes=a-b`` (guarded by ``If-Range``) and
``os.pwrite``\\ s it in place. A hash thread follows the contiguous prefix of finished bytes,
reading them back from the page cache, so SHA256 is done in order while the transfer runs and
only the last few pieces are hashed after it. Finished ranges go to the resume map
(:class:`~provisioner.sources.ranges.SegmentMap`, ``<part>.segments.json``) that a later run,
after a drop or a kill, checks against the server's size and validator before fetching only
the missing ranges.

Every request goes through the caller's session with the caller's auth, exactly like a
single-stream request, so the host-scoped token rules of :mod:`provisioner.sources.http` hold
on each segment (a redirect to a CDN carries no token).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3.exceptions

from provisioner.core.errors import DownloadError
from provisioner.sources.http import RetryPolicy, host_key
from provisioner.sources.progress import ProgressTask
from provisioner.sources.ranges import (
    Range,
    SegmentMap,
    done_prefix,
    merge_ranges,
    missing_ranges,
    split_pieces,
)
from provisioner.sources.transfer import (
    CHUNK_SIZE,
    CONTENT_RANGE,
    DISK_FULL,
    DownloadCancelled,
    Transient,
    Writeback,
    disk_full_error,
    pwrite_all,
    raise_for_status,
    url_for_message,
    validator_of,
)

MiB = 1024 * 1024
#: Files smaller than this use one stream: set-up costs more than a few connections gain.
MIN_SEGMENTED_SIZE = 64 * MiB
#: The unit of work a connection takes; small enough that the hash thread stays close behind.
PIECE_SIZE = 16 * MiB
#: Most connections Phoenix opens to one host at once, over all downloads of the process
#: (aria2's own ceiling for --max-connection-per-host is 16).
HOST_CONNECTION_CAP = 16
#: Seconds between writes of the resume map while pieces complete.
MAP_INTERVAL = 0.5


@dataclass(frozen=True)
class RangeSupport:
    """What a ``Range: bytes=0-0`` probe learnt: the full size and the validator."""

    total: int
    validator: str | None


def probe(
    session: requests.Session,
    url: str,
    headers: Mapping[str, str],
    auth: requests.auth.AuthBase | None,
    retry: RetryPolicy,
) -> tuple[RangeSupport | None, requests.Response | None]:
    """Ask for the first byte; a 206 with a full ``Content-Range`` proves range support.

    Returns ``(support, None)`` when ranges work. Otherwise ``(None, response)``: a 200 (the
    server ignores ranges) is returned open, for the single stream to consume instead of asking
    again; any other answer or failure is ``(None, None)`` and the single stream, which maps
    errors and retries, takes over.
    """
    wanted = {**headers, "Accept-Encoding": "identity", "Range": "bytes=0-0"}
    try:
        response = session.get(url, headers=wanted, stream=True, timeout=retry.timeout, auth=auth)
    except requests.RequestException:
        return None, None
    if response.status_code == 200:
        return None, response
    with response:
        match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if response.status_code != 206 or not match or match.group(3) == "*":
            return None, None
        if match.group(1) != "0":
            return None, None
        response.content  # noqa: B018 (read the one byte so the connection is reused)
        total = int(match.group(3))
        return RangeSupport(total, validator_of(response)), None


class HostLimiter:
    """At most ``cap`` connections per ``host:port`` at once, shared by every download.

    The host is the one asked (a redirect's target counts against the host that sent it).
    """

    def __init__(self, cap: int = HOST_CONNECTION_CAP) -> None:
        self.cap = cap
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    @contextlib.contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Hold one of ``host``'s connections for the duration of the block."""
        with self._lock:
            semaphore = self._slots.setdefault(host, threading.BoundedSemaphore(self.cap))
        with semaphore:
            yield


HOST_LIMITER = HostLimiter()


class FileChanged(Exception):
    """A segment's answer shows another file behind the URL (a 200, or another size)."""


@dataclass
class SegmentedFetch:
    """One segmented transfer into the open, locked staging file ``fd``."""

    url: str
    fd: int
    part: Path
    label: str
    session: requests.Session
    headers: Mapping[str, str]
    auth: requests.auth.AuthBase | None
    retry: RetryPolicy
    cancel: threading.Event | None
    task: ProgressTask | None
    connections: int
    support: RangeSupport
    limiter: HostLimiter = HOST_LIMITER
    sleep: Callable[[float], None] = time.sleep
    transferred: int = 0
    resumed_from: int = 0
    _map: SegmentMap = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _progress: threading.Condition = field(init=False)
    _stop: threading.Event = field(default_factory=threading.Event)
    _failures: list[BaseException] = field(default_factory=list)
    _saved_at: float = 0.0
    _workers_done: bool = False
    _generation: int = 0
    _saved_generation: int = 0
    _save_lock: threading.Lock = field(default_factory=threading.Lock)
    _writeback: Writeback = field(init=False)

    def __post_init__(self) -> None:
        self._progress = threading.Condition(self._lock)

    def prepare(self, *, fresh: bool = False) -> None:
        """Resume from a map that matches the server (size and validator), else start fresh."""
        support = self.support
        kept = None if fresh else SegmentMap.load(self.part)
        fits = (
            kept is not None
            and kept.url == self.url
            and kept.total == support.total
            and kept.validator == support.validator
            and os.fstat(self.fd).st_size == support.total
        )
        if kept is not None and fits:
            self._map = kept
        else:
            self._map = SegmentMap(self.url, support.total, support.validator)
            os.ftruncate(self.fd, 0)
            self._map.save(self.part)  # before the file grows: a full-size .part has a map
            allocate(self.fd, support.total)
        self.resumed_from = sum(b - a for a, b in self._map.done)

    def run(self) -> str:
        """Fetch the missing ranges on several connections; return the SHA256 of the file."""
        total = self._map.total
        pieces = deque(split_pieces(missing_ranges(self._map.done, total), PIECE_SIZE))
        if self.task is not None:
            self.task.restart(self.resumed_from, total)
        self._stop.clear()
        self._failures.clear()
        self._workers_done = False
        hasher: Any = hashlib.sha256()
        self._writeback = Writeback(self.fd)
        hashing = threading.Thread(
            target=self._hash_prefix, args=(hasher,), daemon=True, name=f"hash:{self.label}"
        )
        workers = [
            threading.Thread(
                target=self._work, args=(pieces,), daemon=True, name=f"segment:{self.label}"
            )
            for _ in range(max(1, min(self.connections, len(pieces))))
        ]
        hashing.start()
        for worker in workers:
            worker.start()
        try:
            for worker in workers:
                worker.join()
        finally:
            with self._progress:
                self._workers_done = True
                self._progress.notify_all()
            hashing.join()
            with self._save_lock:
                self._map.save(self.part)
                self._saved_generation = self._generation = self._generation + 1
            self._writeback.close()
        if self._failures:
            raise self._failures[0]
        return str(hasher.hexdigest())

    def discard(self) -> None:
        """Remove the staging file and its map (the fd stays valid until closed)."""
        SegmentMap.drop(self.part)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.part)

    # -- threads ----------------------------------------------------------------------------
    def _work(self, pieces: deque[Range]) -> None:
        while not self._stop.is_set():
            with self._lock:
                if not pieces:
                    return
                piece = pieces.popleft()
            try:
                with self.limiter.slot(host_key(self.url)):
                    self._fetch_piece(*piece)
            except BaseException as exc:
                with self._lock:
                    self._failures.append(exc)
                self._stop.set()
                return

    def _fetch_piece(self, start: int, end: int) -> None:
        cursor = [start]  # how far this piece got, kept across a lost connection
        failures = 0
        while cursor[0] < end and not self._stop.is_set():
            before = cursor[0]
            try:
                self._stream(cursor, end)
            except Transient as exc:
                if cursor[0] > before:
                    failures = 0  # progress was made: a flaky link is not a dead one
                failures += 1
                if failures >= self.retry.attempts:
                    raise DownloadError(
                        f"download of {self.label} failed after {self.retry.attempts} attempts: "
                        f"{exc.reason}",
                        where=url_for_message(self.url),
                        hint="the finished parts are kept; run again to resume",
                    ) from None
                self.sleep(exc.wait if exc.wait is not None else self.retry.backoff(failures))

    def _stream(self, cursor: list[int], end: int) -> None:
        """One request for ``[cursor[0], end)``, advancing ``cursor``; raises Transient."""
        start = cursor[0]
        headers = {
            **self.headers,
            "Accept-Encoding": "identity",
            "Range": f"bytes={start}-{end - 1}",
        }
        if self._map.validator:
            headers["If-Range"] = self._map.validator
        try:
            response = self.session.get(
                self.url, headers=headers, stream=True, timeout=self.retry.timeout, auth=self.auth
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Transient(f"connection failed: {type(exc).__name__}") from None
        except requests.RequestException as exc:
            raise DownloadError(
                f"cannot download {self.label}: {type(exc).__name__}",
                where=url_for_message(self.url),
            ) from None
        with response:
            raise_for_status(response, self.label, self.url, self.retry)
            match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if (
                response.status_code != 206
                or not match
                or int(match.group(1)) != start
                or match.group(3) != str(self._map.total)
            ):
                raise FileChanged
            self._copy(response.raw, cursor, end)

    def _copy(self, raw: Any, cursor: list[int], end: int) -> None:
        while cursor[0] < end and not self._stop.is_set():
            at = cursor[0]
            if self.cancel is not None and self.cancel.is_set():
                raise DownloadCancelled(f"download of {self.label} cancelled")
            try:
                block = raw.read(min(CHUNK_SIZE, end - at))
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise Transient(f"connection lost: {type(exc).__name__}") from None
            if not block:
                raise Transient(f"connection closed at {at} of {end} bytes")
            try:
                pwrite_all(self.fd, block, at)
            except OSError as exc:
                if exc.errno in DISK_FULL:
                    self.discard()
                    raise disk_full_error(self.label, str(self.part.parent)) from None
                raise
            self._finished(at, at + len(block))
            cursor[0] = at + len(block)

    def _finished(self, start: int, end: int) -> None:
        nbytes = end - start
        snapshot = None
        with self._progress:
            self._map.done = merge_ranges([*self._map.done, (start, end)])
            self.transferred += nbytes
            self._progress.notify_all()
            now = time.monotonic()
            if now - self._saved_at >= MAP_INTERVAL:
                self._saved_at = now
                self._generation += 1
                snapshot = (self._generation, self._snapshot())
        self._writeback.wrote(nbytes)
        if snapshot is not None:
            self._save(*snapshot)
        if self.task is not None:
            self.task.update(nbytes)

    def _snapshot(self) -> SegmentMap:
        return SegmentMap(self._map.url, self._map.total, self._map.validator, list(self._map.done))

    def _save(self, generation: int, snapshot: SegmentMap) -> None:
        """Write a snapshot outside the progress lock; an older one never overwrites a newer."""
        with self._save_lock:
            if generation > self._saved_generation:
                snapshot.save(self.part)
                self._saved_generation = generation

    def _hash_prefix(self, hasher: Any) -> None:
        """Hash bytes in file order as soon as every byte before them is finished."""
        hashed, total = 0, self._map.total
        while hashed < total:
            with self._progress:
                self._progress.wait_for(
                    lambda: (
                        done_prefix(self._map.done) > hashed  # noqa: B023 (waited on here)
                        or self._stop.is_set()
                        or self._workers_done
                    )
                )
                ready = done_prefix(self._map.done)
            if ready <= hashed or self._stop.is_set():
                return
            while hashed < ready:
                block = os.pread(self.fd, min(CHUNK_SIZE, ready - hashed), hashed)
                if not block:
                    return
                hasher.update(block)
                hashed += len(block)


def allocate(fd: int, size: int) -> None:
    """Reserve ``size`` bytes for ``fd`` (``posix_fallocate``; a sparse ``ftruncate`` where the
    filesystem cannot). Raises ``OSError(ENOSPC)`` when the space is not there."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise
        os.ftruncate(fd, size)

"""One HTTP stream into a staging file: read, SHA256 and write overlapped, resumable.

The single-stream half of the engine (:mod:`provisioner.sources.download` orchestrates). A
``.part`` grows from byte 0; its sidecar ``<part>.json`` keeps the validator (ETag or
Last-Modified) of the first response, so a resume asks ``Range: bytes=<size>-`` guarded by
``If-Range``; a server that ignores the range, or a changed file, restarts from byte 0.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3.exceptions

from provisioner.core.errors import DiskSpaceError, DownloadError, IntegrityError
from provisioner.core.fsio import atomic_write_json
from provisioner.sources.http import RetryPolicy
from provisioner.sources.progress import ProgressTask
from provisioner.sources.ranges import SegmentMap
from provisioner.sources.transfer import (
    CHUNK_SIZE,
    CONTENT_RANGE,
    DISK_FULL,
    UNSATISFIED_RANGE,
    DownloadCancelled,
    Transient,
    Writeback,
    check_free_space,
    disk_full_error,
    raise_for_status,
    url_for_message,
    validator_of,
)

#: Chunks read ahead of the hash and write threads.
_QUEUE_DEPTH = 4


class _Complete(Exception):
    """The staging file already holds the whole body (416 with a matching length)."""


def mismatch_error(label: str, url: str, expected: str, digest: str) -> IntegrityError:
    return IntegrityError(
        f"SHA256 mismatch for {label}: expected {expected}, got {digest}; nothing was placed",
        where=url_for_message(url),
        hint="the source changed or is corrupt; check the model's page, or update "
        "the pinned sha256 / lock file if the new file is trusted",
    )


def fetch_verified(
    transfer: StreamTransfer, expected: str | None, sleep: Callable[[float], None]
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
        raise mismatch_error(transfer.label, transfer.url, expected, digest)
    return digest


def _run_with_retries(
    transfer: StreamTransfer, retry: RetryPolicy, sleep: Callable[[float], None]
) -> None:
    failures = 0
    while True:
        before = transfer.transferred
        try:
            transfer.fetch()
            return
        except _Complete:
            return
        except Transient as exc:
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


@dataclass
class StreamTransfer:
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
    #: a 200 the range probe already received: the first attempt streams it instead of asking
    first_response: requests.Response | None = None
    _writeback: Any = None

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
        for path in (self.part, self.meta_path, SegmentMap.path_for(self.part)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def disk_full(self) -> DiskSpaceError:
        return disk_full_error(self.label, str(self.part.parent))

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        headers["Accept-Encoding"] = "identity"  # byte ranges of the file itself
        if self.offset > 0:
            headers["Range"] = f"bytes={self.offset}-"
            if self.validator:
                headers["If-Range"] = self.validator
        return headers

    def close_first_response(self) -> None:
        """Release a probe's response that no attempt consumed."""
        if self.first_response is not None:
            self.first_response.close()
            self.first_response = None

    def fetch(self) -> None:
        """One attempt: request from ``offset``, stream to the end, or raise Transient."""
        response, self.first_response = self.first_response, None
        if response is not None and self.offset == 0:
            with response:
                self._check_status(response)
                self._stream(response)
            return
        if response is not None:
            response.close()
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
            raise Transient(f"connection failed: {type(exc).__name__}") from None
        except requests.RequestException as exc:  # bad URL, redirect loop: not transient
            raise DownloadError(
                f"cannot download {self.label}: {type(exc).__name__}",
                where=url_for_message(self.url),
            ) from None
        with response:
            self._check_status(response)
            self._stream(response)

    def _check_status(self, response: requests.Response) -> None:
        raise_for_status(response, self.label, self.url, self.retry)
        if response.status_code == 416:
            match = UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
            if self.offset > 0 and match and int(match.group(1)) == self.offset:
                raise _Complete
            if self.offset > 0:
                self.restart_from_zero()
                raise Transient("range not satisfiable; restarting from 0", wait=0.0)
            raise DownloadError(
                f"HTTP 416 downloading {self.label}", where=url_for_message(self.url)
            )

    def _stream(self, response: requests.Response) -> None:
        total = self._position_for(response)
        if total is not None:
            check_free_space(self.part.parent, total - self.offset, self.label)
        self.save_validator(validator_of(response), total)
        self.total = total
        if self.task is not None:
            self.task.restart(self.offset, total)
        self._copy(response)
        if total is not None and self.offset != total:
            raise Transient(f"connection closed at {self.offset} of {total} bytes")

    def _position_for(self, response: requests.Response) -> int | None:
        """Align the staging file with what the server sends; return the full size if known."""
        if response.status_code == 206:
            match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != self.offset:
                self.restart_from_zero()
                raise Transient("server answered a different range; restarting from 0", wait=0.0)
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
        writeback = self._writeback = Writeback(self.fd)
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
                    raise Transient(f"connection lost: {type(exc).__name__}") from None
                if not block:
                    break
                to_hash.put(block)
                to_write.put(block)
        finally:
            to_hash.put(None)
            to_write.put(None)
            for worker in workers:
                worker.join()
            try:
                writeback.close()
            except OSError as exc:
                failure.append(self._write_error(exc))
        if failure:
            raise failure[0]

    def _write_error(self, exc: OSError) -> BaseException:
        if exc.errno in DISK_FULL:
            self.discard()
            return self.disk_full()
        return exc

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
                failure.append(self._write_error(exc))
                continue
            except BaseException as exc:
                failure.append(exc)
                continue
            self._writeback.wrote(len(block))
            self.transferred += len(block)
            if self.task is not None:
                self.task.update(len(block))

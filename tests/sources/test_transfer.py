"""Shared transfer helpers: rolling writeback, positional writes."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from provisioner.core.errors import DownloadError
from provisioner.sources import download as download_module
from provisioner.sources import segments, stream
from provisioner.sources.download import download, staging_name
from provisioner.sources.transfer import Writeback, pwrite_all
from tests.support.civitai import LoopbackHub, Served
from tests.support.downloads import blob, sha

MiB = 1024 * 1024
#: Every pipe end a :class:`FailingWriteback` opened; the fixture closes them.
_PIPES: list[int] = []


class FailingWriteback(Writeback):
    """The real :class:`Writeback`, pointed at a pipe: ``fdatasync`` on a pipe fails (EINVAL),
    as a writeback of the file's dirty pages that hit an I/O error would.

    ``every=1``: the first :meth:`wrote` wakes the thread, and nothing but that sync or
    :meth:`close` ends its wait. :meth:`close` waits for the thread to end first, so the thread
    has always met its error by then, however the threads were scheduled (a bare ``close``
    right after ``wrote`` may stop the thread before it syncs at all).
    """

    def __init__(self, fd: int, every: int | None = None) -> None:
        read_end, write_end = os.pipe()
        _PIPES.extend((read_end, write_end))
        super().__init__(write_end, every=1)

    def close(self) -> None:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the writeback thread never synced"
        super().close()


@pytest.fixture
def failing_writeback(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FailingWriteback]]:
    """Both engines build a :class:`FailingWriteback` instead of the real one."""
    monkeypatch.setattr(stream, "Writeback", FailingWriteback)
    monkeypatch.setattr(segments, "Writeback", FailingWriteback)
    yield FailingWriteback
    while _PIPES:
        os.close(_PIPES.pop())


def test_writeback_flushes_while_writing_and_stops_cleanly(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        writeback = Writeback(fd, every=1024)
        for i in range(4):
            pwrite_all(fd, b"x" * 1024, i * 1024)
            writeback.wrote(1024)
        writeback.close()
        assert os.pread(fd, 8192, 0) == b"x" * 4096
    finally:
        os.close(fd)


def test_writeback_error_is_raised_by_close(
    failing_writeback: type[FailingWriteback],
) -> None:
    writeback = failing_writeback(-1)  # the fd it is given is replaced by the pipe
    writeback.wrote(1)

    with pytest.raises(OSError) as caught:
        writeback.close()
    assert caught.value.errno == errno.EINVAL


@pytest.mark.parametrize("connections", [1, 4], ids=["one-stream", "segmented"])
def test_writeback_error_fails_the_download_and_places_nothing(
    failing_writeback: type[FailingWriteback],
    monkeypatch: pytest.MonkeyPatch,
    hub: LoopbackHub,
    root: Path,
    staging: Path,
    session: requests.Session,
    connections: int,
) -> None:
    monkeypatch.setattr(segments, "PIECE_SIZE", 1 * MiB)
    monkeypatch.setattr(download_module, "MIN_SEGMENTED_SIZE", 4 * MiB)
    data = blob(6 * MiB + 5, 40)
    url = hub.serve("big.bin", Served(data=data))
    dest = root / "models" / "vae" / "big.safetensors"

    with pytest.raises(DownloadError) as caught:
        download(
            url,
            dest,
            staging=staging,
            expected_sha256=sha(data),
            session=session,
            label="big",
            connections=connections,
        )

    error = caught.value
    assert error.message == "cannot write big: Invalid argument"
    assert error.where == str(dest)
    assert not dest.exists()
    assert not list((root / "models").rglob("*.safetensors"))
    ranged = [r.headers.get("Range") for r in hub.requests_to("/files/")]
    assert (ranged[0] == "bytes=0-0") is (connections > 1)  # the engine that was meant ran
    # not a disk-full error: the .part stays for the next run to resume (its hash decides)
    assert (staging / staging_name(url, sha(data))).exists()


def test_pwrite_all_writes_at_the_offset(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        pwrite_all(fd, b"tail", 6)
        pwrite_all(fd, memoryview(b"head"), 0)
        assert os.pread(fd, 16, 0) == b"head\0\0tail"
    finally:
        os.close(fd)

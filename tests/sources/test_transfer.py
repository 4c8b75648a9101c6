"""Shared transfer helpers: rolling writeback, positional writes."""

from __future__ import annotations

import os
from pathlib import Path

from provisioner.sources.transfer import Writeback, pwrite_all


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


def test_pwrite_all_writes_at_the_offset(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        pwrite_all(fd, b"tail", 6)
        pwrite_all(fd, memoryview(b"head"), 0)
        assert os.pread(fd, 16, 0) == b"head\0\0tail"
    finally:
        os.close(fd)

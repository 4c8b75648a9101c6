"""Atomic file writes: the one helper every writer in Phoenix uses.

A kill at any instant leaves either the old file or the new one, never a half file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from provisioner.core.errors import PhoenixError


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync, then rename.

    Only a file (or a link) is ever replaced: a folder, device or pipe at ``path`` is an
    ``OSError`` (EEXIST), never renamed over.
    """
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        kind = os.lstat(path).st_mode
        if not (stat.S_ISREG(kind) or stat.S_ISLNK(kind)):
            raise OSError(errno.EEXIST, "exists and is not a regular file", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, mode: int = 0o600) -> None:
    """Text variant of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def read_capped(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them. Opening never waits
    (a FIFO with no writer would block for ever): a pipe, device or folder is
    ``OSError(EINVAL)``, a file over ``limit`` bytes ``OSError(EFBIG)``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        chunks, size = [], 0
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
    return b"".join(chunks)


def read_text_file(
    path: Path, what: str, error: type[PhoenixError], hint: str | None = None
) -> str:
    """``path`` as UTF-8 text; unreadable or not UTF-8 is ``error("cannot read <what>: why")``
    located at ``path``."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = (exc.strerror or str(exc)) if isinstance(exc, OSError) else "not UTF-8 text"
        raise error(f"cannot read {what}: {why}", where=str(path), hint=hint) from exc


def write_output(path: Path, text: str, what: str) -> None:
    """Write a file the user asked for (``-o``, ``--write``): atomically, readable by others;
    ``-`` is standard output. Refusals are :class:`PhoenixError` naming the path."""
    import sys

    if str(path) == "-":
        sys.stdout.write(text)
        return
    try:
        atomic_write_text(path, text, mode=0o644)
    except OSError as exc:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is not a folder" if blocker else exc.strerror or str(exc)
        raise PhoenixError(
            f"cannot write {what}: {why}",
            where=str(path),
            hint="give a file path in a writable folder (a folder or device there is not replaced)",
        ) from exc


def atomic_write_json(path: Path, obj: Any, mode: int = 0o600) -> None:
    """Write ``obj`` as stable, indented JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", mode)


def fsync_dir(directory: Path) -> None:
    """Persist a rename by syncing its directory (best effort on filesystems that refuse)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def staging_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A temp directory under ``parent`` that is removed unless the caller renamed it away."""
    import shutil

    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

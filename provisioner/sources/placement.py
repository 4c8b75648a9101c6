"""Putting verified files where ComfyUI looks: hashing, atomic placement, hard-link dedup.

Nothing here decides *where* (that is :mod:`provisioner.sources.organizer`); these helpers only
move bytes so that ``models/`` never holds a partial or unverified file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provisioner.core.fsio import fsync_dir

_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class FileHashes:
    """SHA256 of a file, and its git blob id (SHA-1 of ``blob <size>\\0`` + bytes) when asked."""

    sha256: str
    size: int
    git_blob: str | None = None


def hash_file(path: Path, *, git_blob: bool = False) -> FileHashes:
    """Hash ``path`` in one pass: SHA256, plus the git blob id when ``git_blob`` is set.

    Only a regular file is read (a pipe or device would block or never end): anything else is
    an ``OSError``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of blocking
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)  # O_NONBLOCK was for the open only
        size = st.st_size
        sha = hashlib.sha256()
        blob = hashlib.sha1(f"blob {size}\0".encode()) if git_blob else None
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            if blob is not None:
                blob.update(chunk)
    return FileHashes(sha.hexdigest(), size, blob.hexdigest() if blob is not None else None)


def place(staged: Path, dest: Path) -> None:
    """Atomically move a verified ``staged`` file to ``dest`` and persist both directories.

    The file keeps the mode it was created with (the umask decides; nothing here widens it).
    Staging on another filesystem (``EXDEV``) falls back to a copy beside ``dest``, fsynced and
    renamed into place, after which ``staged`` is removed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staged, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_across_filesystems(staged, dest)
    fsync_dir(dest.parent)
    fsync_dir(staged.parent)


def _copy_across_filesystems(staged: Path, dest: Path) -> None:
    """Copy ``staged`` to a fresh temp file beside ``dest``, fsync, rename, remove ``staged``."""
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.phoenix-tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(staged, "rb") as src, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.unlink(staged)


def link_or_copy(existing: Path, dest: Path, staging: Path) -> str:
    """Make ``dest`` hold the same bytes as ``existing``: a hard link, or a copy across devices.

    The new name appears atomically (link/copy to a temp file in ``staging``, then rename).
    Returns ``"link"`` or ``"copy"``.
    """
    staging.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".dedup-", dir=staging)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        try:
            os.link(existing, tmp)
            how = "link"
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copyfile(existing, tmp)
            how = "copy"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
        return how
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()

"""Putting verified files where ComfyUI looks: hashing, atomic placement, hard-link dedup.

Nothing here decides *where* (that is :mod:`provisioner.sources.organizer`); these helpers only
move bytes so that ``models/`` never holds a partial or unverified file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provisioner.fsio import fsync_dir

_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class FileHashes:
    """SHA256 of a file, and its git blob id (SHA-1 of ``blob <size>\\0`` + bytes) when asked."""

    sha256: str
    size: int
    git_blob: str | None = None


def hash_file(path: Path, *, git_blob: bool = False) -> FileHashes:
    """Hash ``path`` in one pass: SHA256, plus the git blob id when ``git_blob`` is set."""
    size = path.stat().st_size
    sha = hashlib.sha256()
    blob = hashlib.sha1(f"blob {size}\0".encode()) if git_blob else None
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            if blob is not None:
                blob.update(chunk)
    return FileHashes(sha.hexdigest(), size, blob.hexdigest() if blob is not None else None)


def place(staged: Path, dest: Path) -> None:
    """Atomically move a verified ``staged`` file to ``dest`` (same filesystem) and persist it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(staged, 0o644)
    os.replace(staged, dest)
    fsync_dir(dest.parent)


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

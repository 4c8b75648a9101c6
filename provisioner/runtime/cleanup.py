"""Cleanup on exit (and ``phoenix cleanup``): what to remove is pure, removing is time-boxed.

Always: staging files and Phoenix's temp and runtime dirs. Home-level targets (outside the
workspace root) for the homes given: the HF token file, shell histories, and in ephemeral mode
the pip/uv caches (they can hold authenticated index URLs); ``phoenix cleanup`` only passes
homes inside the Phoenix image (:func:`in_phoenix_image`) or with ``--include-home``.
``PARANOID_MODE`` also overwrites and removes outputs, inputs, user data (ComfyUI's database)
and logs of an ephemeral workspace. Models, and data on a persistent volume, are never
touched unless asked.

Overwriting before unlinking defeats casual recovery from the same filesystem only: SSDs remap
blocks, overlay and copy-on-write filesystems write new blocks, and network volumes keep their
own copies, so it is no guarantee of erasure there (the README says so).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.core.fsio import atomic_write_bytes
from provisioner.core.layout import Layout
from provisioner.core.redact import redact
from provisioner.manifest.envmap import flag_or_none
from provisioner.runtime.system import history_files

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Target:
    """One path to clean. ``contents_only`` keeps the directory itself; ``shred`` overwrites."""

    path: Path
    why: str
    shred: bool = False
    contents_only: bool = False


@dataclass
class CleanupSummary:
    """What a cleanup did, printed at exit and returned by ``phoenix cleanup``."""

    files: int = 0
    bytes: int = 0
    dirs: int = 0
    overwritten: int = 0
    skipped_protected: int = 0
    timed_out: bool = False
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        """One human line with the numbers."""
        text = (
            f"cleanup: removed {self.files} files ({self.bytes / 1e6:.1f} MB) and {self.dirs} "
            f"dirs, overwrote {self.overwritten}, in {self.seconds:.2f} s"
        )
        if self.timed_out:
            text += "; STOPPED at the deadline, some files remain"
        if self.errors:
            text += f"; {len(self.errors)} errors (first: {self.errors[0]})"
        return text


def in_phoenix_image(environ: Mapping[str, str]) -> bool:
    """True inside the Phoenix image: its Dockerfile sets ``PHOENIX_IN_IMAGE=1``."""
    return bool(flag_or_none(environ.get("PHOENIX_IN_IMAGE")))


def home_from_env(environ: Mapping[str, str]) -> tuple[list[Path], str | None]:
    """The home ``--include-home`` cleans: ``$HOME`` if absolute, else none and the reason.

    A relative HOME would name paths under the current directory, and a blank one says
    nothing about whose home it is; neither is guessed at.
    """
    raw = environ.get("HOME", "")
    if not raw.strip():
        return [], "HOME is blank or unset, so no home folder is cleaned"
    if not os.path.isabs(raw):
        return [], (
            f"HOME={raw!r} is relative (it would name paths under the current directory), "
            "so no home folder is cleaned"
        )
    return [Path(raw)], None


def token_files(homes: Iterable[Path], hf_home: str | None = None) -> list[Path]:
    """Where huggingface_hub may have stored a token."""
    paths = [Path(hf_home) / "token", Path(hf_home) / "stored_tokens"] if hf_home else []
    for home in homes:
        paths += [
            home / ".cache" / "huggingface" / "token",
            home / ".cache" / "huggingface" / "stored_tokens",
            home / ".huggingface" / "token",
        ]
    return paths


def cache_dirs(homes: Iterable[Path]) -> list[Path]:
    """pip and uv caches under each home."""
    return [home / ".cache" / name for home in homes for name in ("pip", "uv")]


def cleanup_targets(
    layout: Layout,
    mode: str,
    paranoid: bool,
    homes: Sequence[Path],
    *,
    include_volume_data: bool = False,
    hf_home: str | None = None,
) -> list[Target]:
    """Everything to clean for this mode (pure: paths only, nothing is read).

    Nothing outside ``layout.root`` is listed unless ``homes`` or ``hf_home`` name it, and
    only absolute ones do: a relative home would name paths under the current directory.
    """
    homes = [home for home in homes if home.is_absolute()]
    hf_home = hf_home if hf_home and os.path.isabs(hf_home) else None
    targets = [
        Target(layout.staging, "partial downloads", contents_only=True),
        Target(layout.phoenix / "tmp", "Phoenix temp files"),
        Target(layout.phoenix / "run", "runtime files (FileBrowser database, generated config)"),
    ]
    targets += [
        Target(p, "Hugging Face token file", shred=True) for p in token_files(homes, hf_home)
    ]
    targets += [Target(p, "shell history", shred=True) for p in history_files(homes)]
    ephemeral = mode == "ephemeral"
    if ephemeral:
        targets += [Target(p, "package cache (ephemeral mode)") for p in cache_dirs(homes)]
    if paranoid and (ephemeral or include_volume_data):
        why = "PARANOID_MODE" + ("" if ephemeral else " (volume data included on request)")
        for path in (layout.output, layout.input, layout.user, layout.root / "temp"):
            targets.append(Target(path, why, shred=True, contents_only=True))
        targets.append(Target(layout.logs, f"{why}: logs", shred=True, contents_only=True))
    return targets


def log_files(layout: Layout) -> list[Path]:
    """Log files Phoenix and ComfyUI write on the root (rotated ones included)."""
    found: list[Path] = []
    for folder, pattern in ((layout.logs, "*.log*"), (layout.user, "*.log*")):
        if folder.is_dir():
            found += sorted(p for p in folder.glob(pattern) if p.is_file() and not p.is_symlink())
    return found


def scrub_secret_remnants(files: Iterable[Path]) -> int:
    """Mask every registered secret inside ``files`` (atomically, mode kept); count rewrites.

    Phoenix's own logs are redacted as they are written; this catches what a service printed
    some other way (a traceback with a URL, a library's debug line).
    """
    rewritten = 0
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        text = raw.decode("utf-8", "surrogateescape")
        cleaned = redact(text)
        if cleaned != text:
            mode = stat.S_IMODE(path.stat().st_mode)
            atomic_write_bytes(path, cleaned.encode("utf-8", "surrogateescape"), mode)
            rewritten += 1
    return rewritten


def _is_under(path: Path, parents: Iterable[Path]) -> bool:
    resolved = os.path.abspath(path)
    return any(
        resolved == os.path.abspath(p) or resolved.startswith(os.path.abspath(p) + os.sep)
        for p in parents
    )


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each run of allocated data in the first ``size`` bytes of ``fd``.

    Holes already read as zeros, and writing them would allocate blocks: a sparse 20 GiB file
    would fill the disk. Where ``SEEK_DATA`` is unsupported the whole file is one run.
    """
    seek_data, seek_hole = getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)
    if seek_data is None or seek_hole is None:
        return [(0, size)]
    extents: list[tuple[int, int]] = []
    offset = 0
    try:
        while offset < size:
            try:
                start = os.lseek(fd, offset, seek_data)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # nothing but a hole from offset to the end
                    break
                raise
            end = min(os.lseek(fd, start, seek_hole), size) if start < size else start
            if end <= start:
                break
            extents.append((start, end))
            offset = end
    except OSError:  # EINVAL and kin: this filesystem cannot tell data from holes
        return [(0, size)]
    return extents


def _overwrite(path: str, deadline: float, clock: Callable[[], float]) -> bool:
    """Zero the allocated data of ``path`` in place; False when the deadline came first.

    Writes stay inside the size found at open, so the file never grows. O_NONBLOCK keeps a
    FIFO swapped in after ``lstat`` from blocking past the deadline.
    """
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        zeros = bytes(CHUNK)
        for start, end in _data_extents(fd, os.fstat(fd).st_size):
            offset = start
            while offset < end:
                if clock() >= deadline:
                    return False
                offset += os.pwrite(fd, zeros[: min(CHUNK, end - offset)], offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _remove_file(
    path: str, shred: bool, summary: CleanupSummary, deadline: float, clock: Callable[[], float]
) -> None:
    """Overwrite (``shred``) and unlink one file; a failure is recorded under its own path.

    A failed overwrite (ENOSPC on a full or copy-on-write filesystem, EIO) still unlinks:
    a whole file left behind is worse than one removed without zeroing.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        summary.errors.append(f"{path}: {_reason(exc)}")
        return
    regular = stat.S_ISREG(st.st_mode)
    not_overwritten = ""
    if shred and regular and st.st_size:
        try:
            if not _overwrite(path, deadline, clock):
                summary.timed_out = True
                return
            summary.overwritten += 1
        except OSError as exc:
            not_overwritten = f"not overwritten ({_reason(exc)})"
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        done = f"{not_overwritten}, " if not_overwritten else ""
        summary.errors.append(f"{path}: {done}not removed ({_reason(exc)})")
        return
    if not_overwritten:
        summary.errors.append(f"{path}: {not_overwritten}, removed anyway")
    summary.files += 1
    summary.bytes += st.st_size if regular else 0


def _remove_dir(path: str, summary: CleanupSummary) -> None:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        # not empty: a protected file, a failure already recorded by its path, or the deadline
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            summary.errors.append(f"{path}: folder not removed ({_reason(exc)})")
        return
    summary.dirs += 1


def _clean_tree(
    target: Target,
    summary: CleanupSummary,
    deadline: float,
    clock: Callable[[], float],
    protected: Sequence[Path],
) -> None:
    """Remove a folder's files bottom-up, then its emptied folders, file by file.

    Symlinks to folders are unlinked, never entered. A file that fails is recorded and the
    walk goes on; its folder then stays (not empty) without a second error.
    """

    def unlisted(exc: OSError) -> None:
        summary.errors.append(f"{exc.filename}: not listed ({_reason(exc)})")

    for top, dirs, files in os.walk(target.path, topdown=False, onerror=unlisted):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            if clock() >= deadline:
                summary.timed_out = True
            if summary.timed_out:
                return
            full = os.path.join(top, name)
            if _is_under(Path(full), protected):
                summary.skipped_protected += 1
                continue
            _remove_file(full, target.shred, summary, deadline, clock)
        if top != str(target.path) or not target.contents_only:
            _remove_dir(top, summary)


def run_cleanup(
    targets: Sequence[Target],
    deadline: float,
    *,
    protected: Sequence[Path] = (),
    clock: Callable[[], float] = time.monotonic,
) -> CleanupSummary:
    """Remove ``targets`` until ``deadline`` (a ``clock()`` value); never under ``protected``.

    Each failure is recorded in ``errors`` by the path that failed, and cleaning goes on.
    """
    start = clock()
    summary = CleanupSummary()
    for target in targets:
        if summary.timed_out:
            break
        if _is_under(target.path, protected):
            summary.skipped_protected += 1
            continue
        try:
            st = os.lstat(target.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            summary.errors.append(f"{target.path}: {_reason(exc)}")
            continue
        if stat.S_ISDIR(st.st_mode):
            _clean_tree(target, summary, deadline, clock, protected)
        else:
            _remove_file(str(target.path), target.shred, summary, deadline, clock)
    summary.seconds = clock() - start
    return summary


ERRORS_SHOWN = 20  # one failing folder can hold thousands of files


def error_lines(errors: Sequence[str]) -> list[str]:
    """Each path cleanup could not overwrite or remove (the first few), then what to do."""
    if not errors:
        return []
    lines = [f"  error: {error}" for error in errors[:ERRORS_SHOWN]]
    if len(errors) > ERRORS_SHOWN:
        lines.append(f"  ... and {len(errors) - ERRORS_SHOWN} more")
    lines.append(
        "  hint: a path 'not removed' is still there: check its permissions, the immutable "
        "flag (lsattr; chattr -i) and read-only mounts (mount), then run phoenix cleanup "
        "again; one 'not overwritten' is gone, but its old bytes may be recoverable"
    )
    return lines

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

import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.fsio import atomic_write_bytes
from provisioner.layout import Layout
from provisioner.manifest.envmap import flag_or_none
from provisioner.redact import redact
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

    Nothing outside ``layout.root`` is listed unless ``homes`` or ``hf_home`` name it.
    """
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


def _overwrite(path: str, size: int, deadline: float, clock: Callable[[], float]) -> bool:
    """Overwrite ``size`` bytes of ``path`` with zeros; False when the deadline came first."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        zeros = bytes(CHUNK)
        done = 0
        while done < size:
            if clock() >= deadline:
                return False
            done += os.write(fd, zeros[: min(CHUNK, size - done)])
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _remove_file(
    path: str, shred: bool, summary: CleanupSummary, deadline: float, clock: Callable[[], float]
) -> None:
    st = os.lstat(path)
    if shred and stat.S_ISREG(st.st_mode) and st.st_size:
        if not _overwrite(path, st.st_size, deadline, clock):
            summary.timed_out = True
            return
        summary.overwritten += 1
    os.unlink(path)
    summary.files += 1
    summary.bytes += st.st_size if stat.S_ISREG(st.st_mode) else 0


def run_cleanup(
    targets: Sequence[Target],
    deadline: float,
    *,
    protected: Sequence[Path] = (),
    clock: Callable[[], float] = time.monotonic,
) -> CleanupSummary:
    """Remove ``targets`` until ``deadline`` (a ``clock()`` value); never under ``protected``."""
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
            summary.errors.append(f"{target.path}: {exc.strerror}")
            continue
        try:
            if not stat.S_ISDIR(st.st_mode):
                _remove_file(str(target.path), target.shred, summary, deadline, clock)
                continue
            for top, dirs, files in os.walk(target.path, topdown=False):
                for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
                    if clock() >= deadline:
                        summary.timed_out = True
                        break
                    full = os.path.join(top, name)
                    if _is_under(Path(full), protected):
                        summary.skipped_protected += 1
                        continue
                    _remove_file(full, target.shred, summary, deadline, clock)
                if summary.timed_out:
                    break
                if top != str(target.path) or not target.contents_only:
                    try:
                        os.rmdir(top)
                        summary.dirs += 1
                    except OSError:
                        pass  # not empty: a protected file or a timed-out remainder stays
        except OSError as exc:
            summary.errors.append(f"{target.path}: {exc.strerror}")
    summary.seconds = clock() - start
    return summary

"""What the image rehearsal checks, as functions of files and texts (stdlib only).

docker/rehearse.py gathers the material (a saved image archive, a mounted image root, the
container's logs and changed files, facts read inside the running container) and these
functions judge it, so each rule is tested on small inputs in tests/docker/.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

#: Caches that must not ship: pip's and uv's, anywhere; and any home's .cache.
CACHE_DIR_NAMES = ("pip", "uv")
#: Build tools the runtime does not need; the image may hold one only where its base does.
BUILD_TOOLS = ("gcc", "cc", "g++", "c++", "make", "cmake", "ld", "as", "cargo", "rustc")
#: Where a .pyc may be: Phoenix's own package is compiled at build time on purpose; pip
#: compiles what it installs. Anywhere else under these roots a .pyc is a leftover.
PYC_CHECKED_ROOTS = ("opt/phoenix", "opt/ComfyUI", "opt/phoenix-build", "workspace", "etc")
PYC_ALLOWED_ROOT = "opt/phoenix/provisioner"


@dataclass(frozen=True)
class Layer:
    """One layer of a saved image: its size and the instruction that made it."""

    size: int
    created_by: str


def contains_any(stream: IO[bytes], needles: Sequence[bytes], block: int = 1 << 20) -> set[bytes]:
    """Which of ``needles`` occur in the stream (blocks overlap, so none hides on a seam)."""
    found: set[bytes] = set()
    keep = max((len(n) for n in needles), default=1) - 1
    tail = b""
    while True:
        chunk = stream.read(block)
        if not chunk:
            return found
        data = tail + chunk
        found.update(n for n in needles if n in data)
        tail = data[-keep:] if keep else b""


def _members(archive: tarfile.TarFile) -> Iterator[tuple[str, IO[bytes]]]:
    for member in archive:
        if member.isfile():
            handle = archive.extractfile(member)
            if handle is not None:
                yield member.name, handle


def secrets_in_archive(path: Path, needles: Sequence[bytes]) -> dict[str, set[bytes]]:
    """Member path -> needles found, over an image archive and the layer tars inside it."""
    hits: dict[str, set[bytes]] = {}
    with tarfile.open(path) as outer:
        for name, handle in _members(outer):
            found = contains_any(handle, needles)
            if found:
                hits[name] = found
    return hits


def secrets_in_files(paths: Iterable[Path], needles: Sequence[bytes]) -> dict[str, set[bytes]]:
    """Path -> needles found, over regular files (others are skipped)."""
    hits: dict[str, set[bytes]] = {}
    for path in paths:
        try:
            if not stat.S_ISREG(path.lstat().st_mode):
                continue
            with path.open("rb") as handle:
                found = contains_any(handle, needles)
        except OSError:
            continue
        if found:
            hits[str(path)] = found
    return hits


def layers_of_archive(path: Path) -> list[Layer]:
    """The layers of a docker-archive (``podman save --format docker-archive``), in order,
    each with the history entry that made it (empty-layer entries are skipped)."""
    with tarfile.open(path) as archive:
        manifest = json.load(_read(archive, "manifest.json"))[0]
        config = json.load(_read(archive, manifest["Config"]))
        sizes = [archive.getmember(name).size for name in manifest["Layers"]]
    made = [h.get("created_by", "") for h in config.get("history", []) if not h.get("empty_layer")]
    made = ([""] * len(sizes) + made)[-len(sizes) :] if sizes else []
    return [Layer(size, by) for size, by in zip(sizes, made, strict=True)]


def _read(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    handle = archive.extractfile(name)
    if handle is None:
        raise ValueError(f"{name} is not a file in the archive")
    return handle


def human(size: int) -> str:
    """Bytes as a short human figure (MB with one decimal)."""
    return f"{size / 1e6:9.1f} MB"


def caches_in(root: Path) -> list[str]:
    """pip/uv cache folders and non-empty home caches in an image root; apt lists; /tmp files."""
    found: list[str] = []
    homes = [root / "root", *sorted((root / "home").glob("*"))]
    for home in homes:
        cache = home / ".cache"
        if cache.is_dir() and any(cache.iterdir()):
            found.append(str(cache.relative_to(root)))
    for top in ("root", "home", "tmp", "var/tmp", "opt", "usr/local"):
        base = root / top
        if not base.is_dir():
            continue
        for dirpath, dirnames, _files in os.walk(base):
            for name in dirnames:
                if name in CACHE_DIR_NAMES and Path(dirpath).name == ".cache":
                    found.append(str((Path(dirpath) / name).relative_to(root)))
    lists = root / "var/lib/apt/lists"
    if lists.is_dir():
        leftovers = [p for p in lists.iterdir() if p.name not in ("lock", "partial", "auxfiles")]
        if leftovers:
            found.append(f"var/lib/apt/lists ({len(leftovers)} files)")
    for tmp in ("tmp", "var/tmp"):
        base = root / tmp
        if base.is_dir() and any(base.iterdir()):
            found.append(f"{tmp}/ ({', '.join(sorted(p.name for p in base.iterdir())[:5])})")
    return sorted(set(found))


def stray_pyc(root: Path) -> list[str]:
    """.pyc files where none belong, and Phoenix .pyc files without their source module."""
    stray: list[str] = []
    for top in PYC_CHECKED_ROOTS:
        base = root / top
        if not base.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(base):
            here = Path(dirpath)
            for name in files:
                if not name.endswith((".pyc", ".pyo")):
                    continue
                path = here / name
                rel = str(path.relative_to(root))
                if not rel.startswith(PYC_ALLOWED_ROOT + "/") or here.name != "__pycache__":
                    stray.append(rel)
                elif not (here.parent / (name.split(".", 1)[0] + ".py")).is_file():
                    stray.append(rel)  # compiled module whose source is gone
    return sorted(stray)


def build_tools_added(image_root: Path, base_root: Path) -> list[str]:
    """Build tools on the image's PATH folders that its base does not have."""
    added: list[str] = []
    for folder in ("usr/bin", "usr/local/bin", "bin"):
        for tool in BUILD_TOOLS:
            if os.path.lexists(image_root / folder / tool) and not os.path.lexists(
                base_root / folder / tool
            ):
                added.append(f"/{folder}/{tool}")
    return added


def group_or_world_accessible(entries: Iterable[tuple[str, int]]) -> list[str]:
    """Paths (from ``(path, st_mode)`` pairs) that a umask of 077 would not have produced."""
    return sorted(
        path for path, mode in entries if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077
    )

"""What one model ``apply`` shares across its worker threads, and the jobs it hands them.

:class:`FileJob` is one resolved file (how to fetch it, what it must hash to); :class:`Runner`
holds the lazily created HF client and HTTP session, serialises work per content hash (a file
whose bytes are already placed is linked, never fetched twice) and claims destinations, so two
different files never land at one path.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.actions.base import ApplyContext
from provisioner.core.errors import SourceError
from provisioner.manifest.desired import DesiredModel
from provisioner.plan.change import Change
from provisioner.sources.progress import Progress
from provisioner.state.store import FileRecord, same_file

#: fetch(staging_dir) -> (verified staged file, its sha256)
Fetch = Callable[[Path], tuple[Path, str]]


@dataclass
class FileJob:
    """One file of a model, resolved: how to fetch it and what it must hash to."""

    label: str
    filename: str
    sha256: str | None
    size: int | None
    #: folder known before fetching (explicit type, profile, source metadata, known name)
    folder: str | None
    source_folder: str | None
    fetch: Fetch
    #: a stable staging folder for this file, so a rerun resumes
    staging_key: str


@dataclass
class Resolved:
    """A change with its files resolved and what to record about the resolution."""

    change: Change
    model: DesiredModel
    files: list[FileJob]
    resolved: dict[str, str]


@dataclass
class Placed:
    """One file in place: where, its bytes' SHA256, how it got there, bytes transferred."""

    path: Path
    sha256: str
    how: str
    transferred: int


@dataclass
class Runner:
    """Shared, thread-safe machinery of one ``apply`` call."""

    ctx: ApplyContext
    progress: Progress | None = None
    #: set on Ctrl-C: transfers stop at the next chunk (their partial files are kept to resume)
    cancel: threading.Event = field(default_factory=threading.Event)
    _session: Any = None
    _hf: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sha_locks: dict[str, threading.Lock] = field(default_factory=dict)
    #: sha256 → a placed file with those bytes (seeded from the state, trusted by size+mtime)
    _by_sha: dict[str, Path] = field(default_factory=dict)
    #: destination (relative) → (model id, sha256, source label) claimed in this run
    _claims: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        root = self.ctx.layout.root
        for record in self.ctx.store.state.models.values():
            for f in record.files:
                if trusted(root, f):
                    self._by_sha.setdefault(f.sha256, root / f.path)

    # -- sources --------------------------------------------------------------------------
    def hf(self) -> Any:
        with self._lock:
            if self._hf is None:
                from provisioner.sources.huggingface import HFClient, transfer_backend

                self._hf = HFClient(token=self.ctx.secrets.hf_token)
                self.ctx.log.debug("Hugging Face transfers: %s", transfer_backend())
            return self._hf

    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                from provisioner.sources.http import make_session

                # no credential on the session: the Civitai token is scoped per request
                self._session = make_session(pool_size=max(16, 2 * self.ctx.jobs))
            return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    # -- per-sha serialisation and dedup ------------------------------------------------
    @contextlib.contextmanager
    def for_sha(self, sha: str | None) -> Iterator[Path | None]:
        """Serialise work on one content hash; yields an already placed copy, if any."""
        if sha is None:
            yield None
            return
        with self._lock:
            lock = self._sha_locks.setdefault(sha, threading.Lock())
        with lock:
            with self._lock:
                existing = self._by_sha.get(sha)
            yield existing if existing is not None and existing.is_file() else None

    def has(self, sha: str | None) -> bool:
        """True when a file with these bytes is already placed (it will be linked, not fetched)."""
        with self._lock:
            return sha is not None and sha in self._by_sha

    def placed(self, sha: str, path: Path) -> None:
        with self._lock:
            self._by_sha.setdefault(sha, path)

    def claim(self, model_id: str, rel: str, sha: str, label: str) -> None:
        """Refuse to place two different files at one destination (identical bytes may share).

        Two files of one model count as much as files of two models: neither may replace the
        other.
        """
        with self._lock:
            other = self._claims.get(rel)
            if other is not None and other[1] != sha:
                if other[0] == model_id:
                    raise _own_collision(model_id, rel, other[2], label)
                raise SourceError(
                    f"{rel} is also the destination of {other[0]} with different content",
                    hint="set 'subdir' (or 'name') on one of the entries",
                )
            for rid, rec in self.ctx.store.state.models.items():
                if rid == model_id:
                    continue
                for f in rec.files:
                    if f.path == rel and f.sha256 != sha:
                        raise SourceError(
                            f"{rel} is already placed by {rid} with different content",
                            hint="set 'subdir' (or 'name') on one of the entries",
                        )
            self._claims.setdefault(rel, (model_id, sha, label))


def _own_collision(model_id: str, dest: str, first: str, second: str) -> SourceError:
    return SourceError(
        f"{model_id}: {first} and {second} are different files with the same destination {dest}; "
        "one would silently replace the other",
        hint="narrow 'files' to one of them, or split the entry into entries with different "
        "'subdir' values",
    )


def check_own_destinations(model_id: str, subdir: str | None, jobs: list[FileJob]) -> None:
    """Before anything is fetched: no two different files of one model may share a destination.

    Files with the same name collide unless their folders are known and differ (a folder that
    only the file's header will tell may be the same). Identical bytes (same known SHA256) may
    share a destination: the second is the first. Raises :class:`SourceError` naming both.
    """
    sub = f"{subdir.strip('/')}/" if subdir else ""
    for i, job in enumerate(jobs):
        for other in jobs[:i]:
            if other.filename != job.filename:
                continue
            if other.folder and job.folder and other.folder != job.folder:
                continue
            if job.sha256 and other.sha256 == job.sha256:
                continue
            folder = job.folder or other.folder or "?"
            raise _own_collision(
                model_id, f"models/{folder}/{sub}{job.filename}", other.label, job.label
            )


def trusted(root: Path, f: FileRecord) -> bool:
    """The recorded file is still there, with the recorded size and mtime_ns."""
    try:
        st = (root / f.path).stat()
    except OSError:
        return False
    return same_file(st.st_size, st.st_mtime_ns, f)

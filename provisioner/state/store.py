"""The workspace state file (``.phoenix/state.json``): what Phoenix placed and how to trust it.

Reading is a fact (never writes); writing goes through :class:`StateStore`, which serialises
updates from parallel workers and writes atomically after each one, so a kill at any instant
leaves a state that describes only files that are really in place.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from provisioner.core.errors import StateError
from provisioner.core.fsio import atomic_write_json
from provisioner.core.layout import Layout

STATE_VERSION = 1
_T = TypeVar("_T")


@dataclass(frozen=True)
class FileRecord:
    """One placed file. ``path`` is relative to the workspace root."""

    path: str
    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class ModelRecord:
    """A model entry Phoenix placed: its files, source and the version it resolved to."""

    id: str
    source: str
    files: tuple[FileRecord, ...]
    resolved: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeRecord:
    """A custom node checkout: where, from where, at which commit, with which requirements."""

    name: str
    url: str
    ref: str | None
    commit: str
    requirements_sha256: str | None = None


@dataclass(frozen=True)
class PackageRecord:
    """An extra Python requirement Phoenix installed, and the version that satisfied it."""

    requirement: str
    installed: str


@dataclass
class State:
    """Everything Phoenix manages on one root."""

    models: dict[str, ModelRecord] = field(default_factory=dict)
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    packages: dict[str, PackageRecord] = field(default_factory=dict)
    comfyui_commit: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The on-disk form."""
        return {
            "version": STATE_VERSION,
            "models": {k: asdict(v) for k, v in sorted(self.models.items())},
            "nodes": {k: asdict(v) for k, v in sorted(self.nodes.items())},
            "packages": {k: asdict(v) for k, v in sorted(self.packages.items())},
            "comfyui_commit": self.comfyui_commit,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        """Parse the on-disk form; raises ``KeyError``/``TypeError``/``ValueError`` on a
        malformed file: a field of the wrong type, a path that would leave the workspace (``..``,
        absolute) or a node name that is not one folder name, since apply and ``--prune`` act
        on them."""
        models = {}
        for key, raw in _section(data, "models").items():
            rec = _record(ModelRecord, raw)
            files = tuple(_record(FileRecord, f) for f in _typed(rec.files, list, "files"))
            for f in files:
                _inside(f.path)
            resolved = _typed(rec.resolved, dict, "resolved")
            if not all(isinstance(v, str) for v in resolved.values()):
                raise TypeError(f"model {key!r}: 'resolved' values must be text")
            models[key] = ModelRecord(rec.id, rec.source, files, dict(resolved))
        nodes = {
            _folder_name(k): _record(NodeRecord, v) for k, v in _section(data, "nodes").items()
        }
        for key, node in nodes.items():
            if node.name != key:
                raise ValueError(f"node {key!r} records the name {node.name!r}")
        packages = {k: _record(PackageRecord, v) for k, v in _section(data, "packages").items()}
        commit = data.get("comfyui_commit")
        return cls(
            models,
            nodes,
            packages,
            None if commit is None else _typed(commit, str, "comfyui_commit"),
        )


#: the field types the state file may hold, by their annotation text
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "str | None": (str, type(None)),
}


def _typed(value: Any, kind: type[_T], what: str) -> _T:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{what!r} must be {kind.__name__}, not {type(value).__name__}")
    return value


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    return _typed(data.get(name, {}), dict, name)


def _record(cls: type[_T], raw: Any) -> _T:
    """``cls(**raw)`` with every text/number field checked against its annotation."""
    record = cls(**_typed(raw, dict, cls.__name__))
    for f in fields(cls):  # type: ignore[arg-type]
        allowed = _FIELD_TYPES.get(str(f.type))
        value = getattr(record, f.name)
        if allowed and (not isinstance(value, allowed) or isinstance(value, bool)):
            raise TypeError(f"{cls.__name__}.{f.name} must be {f.type}, not {type(value).__name__}")
    return record


def _inside(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or ".." in parts or "\x00" in path:
        raise ValueError(f"{path!r} is not a path inside the workspace")
    return path


def _folder_name(name: str) -> str:
    if name in ("", ".", "..") or any(ch in name for ch in "/\\\x00"):
        raise ValueError(f"{name!r} is not a single folder name")
    return name


def load_state(layout: Layout) -> State:
    """Read the state file; a missing file is an empty state. Never writes."""
    path = layout.state_file
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return State()
    except OSError as exc:
        raise StateError(
            f"cannot read state file: {exc.strerror}",
            where=str(path),
            hint="the workspace root must be a folder Phoenix can read and write",
        ) from exc
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise TypeError(f"the file holds {type(data).__name__}, not an object")
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported state version {data.get('version')!r}")
        return State.from_json(data)
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise StateError(
            f"state file is corrupt ({exc})",
            where=str(path),
            hint="move it aside; Phoenix will re-verify files on disk by SHA256 and rebuild it",
        ) from exc


class StateStore:
    """Thread-safe writer of the state file; each update is persisted atomically at once."""

    def __init__(
        self,
        layout: Layout,
        state: State | None = None,
        *,
        guard: Callable[[], None] = lambda: None,
    ) -> None:
        """``guard`` runs before each write and raises to stop it (the volume lock's fence)."""
        self._layout = layout
        self._state = state if state is not None else load_state(layout)
        self._lock = threading.Lock()
        self._guard = guard

    @property
    def state(self) -> State:
        return self._state

    def _save(self) -> None:
        self._guard()
        self._layout.phoenix.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_json(self._layout.state_file, self._state.to_json())

    def put_model(self, record: ModelRecord) -> None:
        """Record (or replace) a placed model entry."""
        with self._lock:
            self._state.models[record.id] = record
            self._save()

    def drop_model(self, model_id: str) -> None:
        """Forget a model entry (after its files were removed)."""
        with self._lock:
            if self._state.models.pop(model_id, None) is not None:
                self._save()

    def put_node(self, record: NodeRecord) -> None:
        """Record (or replace) a node checkout."""
        with self._lock:
            self._state.nodes[record.name] = record
            self._save()

    def drop_node(self, name: str) -> None:
        """Forget a node checkout."""
        with self._lock:
            if self._state.nodes.pop(name, None) is not None:
                self._save()

    def put_package(self, record: PackageRecord) -> None:
        """Record an installed extra requirement."""
        with self._lock:
            self._state.packages[record.requirement] = record
            self._save()

    def drop_package(self, requirement: str) -> None:
        """Forget an extra requirement."""
        with self._lock:
            if self._state.packages.pop(requirement, None) is not None:
                self._save()

    def set_comfyui_commit(self, commit: str) -> None:
        """Record the ComfyUI commit that was checked out."""
        with self._lock:
            self._state.comfyui_commit = commit
            self._save()


_SECOND_NS = 1_000_000_000


def same_file(size: int, mtime_ns: int, record: FileRecord) -> bool:
    """Whether a file's size and mtime still match ``record`` (so its hash can be trusted).

    An exact match, or the recorded mtime truncated to whole seconds: image layer tars drop
    the sub-second part (buildah 1.28 does: a file COPY'd with mtime ...123456789 ns reads back
    ...000000000 from the built image, and the layer tar holds integer mtimes with no PAX
    header; checked by hand on this machine kind), so a baked root would otherwise look
    drifted at every start and re-hash tens of GB. Only that exact truncation counts: the size
    must match too, and any other edit moves the mtime off that whole second.
    """
    if size != record.size:
        return False
    if mtime_ns == record.mtime_ns:
        return True
    return mtime_ns % _SECOND_NS == 0 and mtime_ns == record.mtime_ns - record.mtime_ns % _SECOND_NS


def file_record(root: Path, path: Path, sha256: str) -> FileRecord:
    """A :class:`FileRecord` for a file just placed under ``root``."""
    st = path.stat()
    return FileRecord(str(path.relative_to(root)), st.st_size, st.st_mtime_ns, sha256)

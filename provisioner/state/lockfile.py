"""The lock file: every floating reference resolved, so a re-run needs no resolution at all.

``phoenix lock`` writes ``<manifest stem>.lock.json`` next to the manifest (``phoenix.lock.json``
in the current directory for the embedded default) with, per model id, the Hugging Face commit
and per-file SHA256/size, or the Civitai version, file, SHA256, size and download URL; per node,
the commit its ref points at. It also holds a hash of the merged desired items (manifest + env),
so ``apply --locked`` can refuse a lock that no longer matches. It never holds a token.

This module reads, writes and checks the file; resolving the references (network) is
:mod:`provisioner.sources.resolve`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner import __version__
from provisioner.core.errors import LockFileError
from provisioner.core.fsio import write_output
from provisioner.manifest.desired import (
    DesiredModel,
    DesiredNode,
    DesiredState,
    request_key,
)
from provisioner.manifest.models import HFModel

LOCK_VERSION = 1
#: what ``desired_hash`` covers: 1 = models and nodes; 2 = also packages and the ComfyUI repo/ref
HASH_VERSION = 2
DEFAULT_LOCK_NAME = "phoenix.lock.json"


@dataclass(frozen=True)
class LockFile:
    """A parsed lock file. ``models``/``nodes`` map item ids to their pinned facts."""

    desired_hash: str
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: str | None = None
    #: a lock written before packages and the ComfyUI ref were covered keeps its pins valid
    hash_version: int = HASH_VERSION

    def to_json(self) -> dict[str, Any]:
        """The on-disk form (stable key order)."""
        return {
            "version": LOCK_VERSION,
            "generated_by": f"phoenix {__version__}",
            "hash_version": self.hash_version,
            "desired_hash": self.desired_hash,
            "models": self.models,
            "nodes": self.nodes,
        }


def lock_path_for(manifest_path: str | None, cwd: Path | None = None) -> Path:
    """``<stem>.lock.json`` beside the manifest, or ``phoenix.lock.json`` in ``cwd``."""
    if manifest_path:
        manifest = Path(manifest_path)
        return manifest.with_name(f"{manifest.stem}.lock.json")
    return (cwd or Path.cwd()) / DEFAULT_LOCK_NAME


def desired_hash(desired: DesiredState, version: int = HASH_VERSION) -> str:
    """SHA256 over what the lock reviews: each model's and node's identity and request, and
    (``version`` 2) the extra packages and the ComfyUI repo/ref.

    Built from the merged state, so an env var that adds or changes an item changes it too;
    settings the lock does not cover (ports, services) do not.
    """
    body: dict[str, Any] = {
        "models": sorted((m.id, request_key(m)) for m in desired.models),
        "nodes": sorted(
            (n.id, json.dumps(n.spec.model_dump(mode="json"), sort_keys=True))
            for n in desired.nodes
        ),
    }
    if version >= 2:  # not pinned by the lock, but `--locked` must not install unreviewed code
        comfy = desired.manifest.comfyui
        body["packages"] = sorted(p.requirement for p in desired.packages)
        body["comfyui"] = [comfy.repo, comfy.ref]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def load_lock(path: Path) -> LockFile:
    """Read and check a lock file; problems are :class:`LockFileError` naming the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise LockFileError(
            "no lock file", where=str(path), hint="run `phoenix lock` first (same --manifest)"
        ) from exc
    except OSError as exc:
        raise LockFileError(f"cannot read the lock file: {exc.strerror}", where=str(path)) from exc
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
            raise ValueError(f"unsupported lock version {data.get('version')!r}")
        models, nodes = data.get("models", {}), data.get("nodes", {})
        if not isinstance(models, dict) or not isinstance(nodes, dict):
            raise ValueError("'models' and 'nodes' must be objects")
        for item_id, entry in models.items():
            _check_model_entry(item_id, entry)
        for item_id, entry in nodes.items():
            if not isinstance(entry, dict) or not _HEX40.match(str(entry.get("commit"))):
                raise ValueError(f"{item_id}: 'commit' must be a 40-hex git commit")
        hash_version = data.get("hash_version", 1)
        if hash_version not in (1, HASH_VERSION):
            raise ValueError(f"unsupported hash_version {hash_version!r}")
        return LockFile(str(data["desired_hash"]), models, nodes, str(path), hash_version)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise LockFileError(
            f"invalid lock file ({exc})", where=str(path), hint="regenerate it with `phoenix lock`"
        ) from exc


_HEX40 = re.compile(r"^[0-9a-fA-F]{40}\Z")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}\Z")


def _check_model_entry(item_id: str, entry: Any) -> None:
    """The fields apply uses must have the types it expects (a hand-edited lock fails here)."""
    if not isinstance(entry, dict):
        raise ValueError(f"{item_id}: the entry must be an object")
    files = entry.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise ValueError(f"{item_id}: 'files' must be a list of objects")
    for f in files:
        sha, size = f.get("sha256"), f.get("size")
        if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
            raise ValueError(f"{item_id}: sha256 {sha!r} is not 64 hex digits")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise ValueError(f"{item_id}: size {size!r} is not a byte count")
        for key in ("path", "filename"):
            if f.get(key) is not None and not isinstance(f[key], str):
                raise ValueError(f"{item_id}: {key!r} must be text")
    for key in ("revision", "folder", "download_url"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise ValueError(f"{item_id}: {key!r} must be text")


def write_lock(lock: LockFile, path: Path) -> None:
    """Write ``lock`` atomically (readable by others: it is meant to be committed)."""
    write_output(path, json.dumps(lock.to_json(), indent=2, sort_keys=True) + "\n", "the lock file")


# -- using a lock ---------------------------------------------------------------------------
def check_lock(desired: DesiredState, lock: LockFile) -> None:
    """Raise :class:`LockFileError` when the desired items changed since the lock was written,
    or the lock lacks an entry (a hand-edited file): ``--locked`` never resolves anything."""
    drift = lock_drift(desired, lock)
    if not drift and lock.desired_hash == desired_hash(desired, lock.hash_version):
        return
    detail = "; ".join(drift[:5]) if drift else "an entry's options changed"
    raise LockFileError(
        f"the manifest or environment changed since `phoenix lock` ({detail})",
        where=lock.path,
        hint="run `phoenix lock` again, or apply without --locked",
    )


def lock_drift(desired: DesiredState, lock: LockFile) -> list[str]:
    """Human messages on how ``desired`` differs from ``lock`` (for ``phoenix plan``)."""
    out = []
    wanted = {m.id: m for m in desired.models}
    for model_id, model in wanted.items():
        pinned = lock.models.get(model_id)
        if pinned is None:
            out.append(f"{model_id} is not in the lock file")
            continue
        files = pinned.get("files", [])
        if model.sha256 and len(files) == 1 and files[0].get("sha256") != model.sha256.lower():
            out.append(f"{model_id}: the manifest's sha256 differs from the locked one")
    out += [f"{mid} is locked but no longer desired" for mid in lock.models if mid not in wanted]
    node_ids = {n.id for n in desired.nodes}
    out += [f"{n.id} is not in the lock file" for n in desired.nodes if n.id not in lock.nodes]
    out += [f"{nid} is locked but no longer desired" for nid in lock.nodes if nid not in node_ids]
    if not out and lock.desired_hash != desired_hash(desired, lock.hash_version):
        covered = "packages, the ComfyUI repo/ref or " if lock.hash_version >= 2 else ""
        out.append(f"{covered}an entry's options changed since the lock was written")
    return out


def apply_lock(desired: DesiredState, lock: LockFile) -> DesiredState:
    """A copy of ``desired`` whose items carry the lock's pins (hashes, sizes, versions)."""
    models = tuple(_pin_model(m, lock.models.get(m.id)) for m in desired.models)
    nodes = tuple(_pin_node(n, lock.nodes.get(n.id)) for n in desired.nodes)
    return dataclasses.replace(desired, models=models, nodes=nodes)


def _pin_model(model: DesiredModel, pinned: dict[str, Any] | None) -> DesiredModel:
    if not pinned:
        return model
    files = pinned.get("files") or []
    pins: dict[str, str] = {}
    changes: dict[str, Any] = {}
    if model.source == "hf":
        pins["revision"] = str(pinned["revision"])
        if len(files) == 1 and not _is_glob_id(model):
            pins["path"] = files[0]["path"]
        else:
            pins["files"] = json.dumps(files, sort_keys=True)
    elif model.source == "civitai":
        for key in ("model_id", "version_id", "file_id", "download_url", "model_name",
                    "version_name"):  # fmt: skip
            if pinned.get(key) is not None:
                pins[key] = str(pinned[key])
    if len(files) == 1:
        only = files[0]
        changes.update(
            sha256=only.get("sha256") or model.sha256,
            size=only.get("size"),
            filename=only.get("filename") or model.filename,
        )
    elif files:
        changes["size"] = sum(int(f.get("size") or 0) for f in files)
    if pinned.get("folder") and not model.folder:
        changes["folder"] = pinned["folder"]
    return dataclasses.replace(model, pinned=pins, **changes)


def _pin_node(node: DesiredNode, pinned: dict[str, Any] | None) -> DesiredNode:
    if not pinned or not pinned.get("commit"):
        return node
    return dataclasses.replace(node, locked_commit=str(pinned["commit"]))


def _is_glob_id(model: DesiredModel) -> bool:
    entry = model.entry
    return isinstance(entry, HFModel) and model.id.startswith(f"hf:{entry.hf}:")

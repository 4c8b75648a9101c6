"""Kind ``model`` (plan half): observe placed files (read-only), diff against the desired models.

``apply`` lives in :mod:`provisioner.actions.model_apply` (downloads, verification, placement).
A placed file is trusted when its size and mtime_ns match the state file (or its mtime reads
back truncated to whole seconds, as from an image layer: ``same_file``); ``--verify`` re-hashes.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from provisioner.manifest.desired import DesiredModel, DesiredState, request_key
from provisioner.plan.change import Action, Change
from provisioner.plan.context import ObserveContext
from provisioner.state.store import ModelRecord, State, same_file

KIND = "model"


@dataclass(frozen=True)
class FileFact:
    """What is on disk at a path (relative to the root)."""

    exists: bool
    size: int = 0
    mtime_ns: int = 0
    sha256: str | None = None


@dataclass(frozen=True)
class ModelFacts:
    """State records plus the on-disk facts of every file they and the desired items name."""

    state: State
    files: dict[str, FileFact]
    verified: bool = False


def dest_of(model: DesiredModel) -> str:
    """Destination relative to the root, with ``?`` for what only resolution can tell."""
    folder = model.folder or "?"
    subdir = f"{model.entry.subdir.strip('/')}/" if model.entry.subdir else ""
    return f"models/{folder}/{subdir}{model.filename or '?'}"


def observe(desired: DesiredState, ctx: ObserveContext) -> ModelFacts:
    """Stat every recorded and every expected file; hash them only with ``verify``."""
    root = ctx.layout.root
    paths = {f.path for rec in ctx.state.models.values() for f in rec.files}
    paths |= {d for m in desired.models if "?" not in (d := dest_of(m))}
    files = {p: _fact(root / p, ctx.verify) for p in sorted(paths)}
    return ModelFacts(ctx.state, files, ctx.verify)


def _fact(path: Path, verify: bool) -> FileFact:
    try:
        st = path.stat()
    except OSError:
        return FileFact(False)
    if not stat.S_ISREG(st.st_mode):  # a pipe, device or folder where a model belongs
        return FileFact(False)
    digest = None
    if verify:
        from provisioner.sources.placement import hash_file  # hashing only with --verify

        digest = hash_file(path).sha256
    return FileFact(True, st.st_size, st.st_mtime_ns, digest)


def diff(desired: DesiredState, facts: ModelFacts) -> list[Change]:
    """create / update (missing, drifted, request changed) / unchanged / delete (prune only)."""
    changes = []
    wanted = set()
    for model in desired.models:
        wanted.add(model.id)
        record = facts.state.models.get(model.id)
        action, reason = _judge(model, record, facts)
        changes.append(
            Change(
                KIND,
                action,
                model.id,
                model.origin,
                reason,
                dest=_recorded_dest(record) if action == "unchanged" and record else dest_of(model),
                size=_record_size(record) if action == "unchanged" and record else model.size,
                source=model.source,
                item=model,
                details={"sha256": model.sha256, "folder": model.folder, "variant": model.variant},
            )
        )
    for model_id, record in sorted(facts.state.models.items()):
        if model_id not in wanted:
            changes.append(
                Change(
                    KIND,
                    "delete",
                    model_id,
                    "state",
                    "no longer desired; would remove with --prune",
                    dest=_recorded_dest(record),
                    size=_record_size(record),
                    source=record.source,
                    item=record,
                )
            )
    return changes


def _judge(
    model: DesiredModel, record: ModelRecord | None, facts: ModelFacts
) -> tuple[Action, str]:
    if record is None:
        dest = dest_of(model)
        existing = facts.files.get(dest)
        if existing and existing.exists:
            return "create", "file exists but was not placed by Phoenix; will verify by SHA256"
        return "create", "not present"
    problems = []
    for f in record.files:
        fact = facts.files.get(f.path, FileFact(False))
        if not fact.exists:
            problems.append(f"{f.path} missing on disk")
        elif not same_file(fact.size, fact.mtime_ns, f):
            problems.append(f"{f.path} changed on disk since placed (drifted)")
        elif facts.verified and fact.sha256 != f.sha256:
            problems.append(f"{f.path} SHA256 differs from the recorded one")
    if model.sha256 and len(record.files) == 1 and record.files[0].sha256 != model.sha256:
        problems.append("the manifest's sha256 differs from the placed file's")
    requested = record.resolved.get("request")
    if requested is not None and requested != request_key(model):
        problems.append("the manifest entry changed")
    pinned = {k: v for k, v in model.pinned.items() if k in record.resolved}
    if any(record.resolved[k] != v for k, v in pinned.items()):
        problems.append("the lock file pins another version")
    if problems:
        return "update", "; ".join(problems)
    return (
        "unchanged",
        "verified by SHA256" if facts.verified else "present; size+mtime match state",
    )


def _recorded_dest(record: ModelRecord) -> str:
    if len(record.files) == 1:
        return record.files[0].path
    return f"{len(record.files)} files"


def _record_size(record: ModelRecord) -> int:
    return sum(f.size for f in record.files)

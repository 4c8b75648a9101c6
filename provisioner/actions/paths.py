"""Kind ``path``: the workspace folders ComfyUI and Phoenix use, created private (0700)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from provisioner.actions.base import ApplyContext, ObserveContext
from provisioner.manifest.desired import DesiredState
from provisioner.plan.change import Change, ItemResult

KIND = "path"
FOLDERS = ("models", "custom_nodes", "input", "output", "user", ".phoenix")


@dataclass(frozen=True)
class PathFacts:
    """Which of the workspace folders exist, and which names are taken by something else."""

    existing: frozenset[str]
    blocked: frozenset[str] = frozenset()


def observe(desired: DesiredState, ctx: ObserveContext) -> PathFacts:
    """Read-only: which folders already exist under the root."""
    root = ctx.layout.root
    existing = frozenset(f for f in FOLDERS if (root / f).is_dir())
    blocked = frozenset(f for f in FOLDERS if f not in existing and os.path.lexists(root / f))
    return PathFacts(existing, blocked)


def _reason(folder: str, facts: PathFacts) -> str:
    if folder in facts.existing:
        return "exists"
    if folder in facts.blocked:
        return "a file (or a broken link) has this name: move it away, apply will fail"
    return "missing"


def diff(desired: DesiredState, facts: PathFacts) -> list[Change]:
    """One change per workspace folder."""
    return [
        Change(
            KIND,
            "unchanged" if folder in facts.existing else "create",
            f"path:{folder}",
            "default",
            _reason(folder, facts),
            dest=f"{folder}/",
            item=folder,
        )
        for folder in FOLDERS
    ]


def apply(changes: list[Change], ctx: ApplyContext) -> list[ItemResult]:
    """Create missing folders with mode 0700."""
    results = []
    for change in changes:
        if change.action != "create":
            continue
        path = ctx.layout.root / str(change.item)
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            results.append(ItemResult(change.id, KIND, True, "created"))
        except OSError as exc:
            results.append(ItemResult(change.id, KIND, False, f"{path}: {exc.strerror}", True))
    return results

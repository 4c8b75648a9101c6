"""Kind ``path`` (plan half): which workspace folders exist (read-only), and the diff (pure)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from provisioner.manifest.desired import DesiredState
from provisioner.plan.change import Change
from provisioner.plan.context import ObserveContext

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


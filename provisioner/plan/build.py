"""Build a plan: every kind's read-only ``observe`` then pure ``diff``; nothing is written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.core.config import Versions
from provisioner.core.layout import Layout
from provisioner.core.units import GB
from provisioner.manifest.desired import DesiredState, VariantChoice
from provisioner.plan.change import MARKS, Change
from provisioner.plan.context import ObserveContext
from provisioner.plan.kinds import kind_modules
from provisioner.software import pyenv
from provisioner.state.store import load_state


@dataclass(frozen=True)
class Plan:
    """The diff between desired and observed, ready to render or apply."""

    changes: tuple[Change, ...]
    warnings: tuple[str, ...]
    root: str
    free_bytes: int | None
    facts: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    versions: dict[str, str] = field(default_factory=dict)
    #: the variant chosen for each profiled repo with variants, and why
    variants: tuple[VariantChoice, ...] = ()

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.pending]

    def has_changes(self, prune: bool = False) -> bool:
        """True when ``apply`` (with ``--prune`` if given) would change something."""
        acting = {"create", "update", "delete"} if prune else {"create", "update"}
        return any(c.action in acting for c in self.changes)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(MARKS, 0)
        for c in self.changes:
            out[c.action] += 1
        return out

    def download_bytes(self) -> tuple[int, int]:
        """(known bytes to download, number of downloads whose size is unknown offline)."""
        known, unknown = 0, 0
        for c in self.changes:
            if c.kind == "model" and c.action in {"create", "update"}:
                if c.size is None:
                    unknown += 1
                else:
                    known += c.size
        return known, unknown

    def digest(self) -> str:
        """A stable hash of the pending changes (reported by the health API)."""
        body = [(c.kind, c.action, c.id, c.dest) for c in self.changes]
        return hashlib.sha256(json.dumps(body).encode()).hexdigest()[:16]


def build_plan(
    desired: DesiredState, layout: Layout, versions: Versions, *, verify: bool = False
) -> Plan:
    """Observe every kind (read-only) and diff it against ``desired``."""
    state = load_state(layout)
    ctx = ObserveContext(layout, state, versions, verify)
    changes: list[Change] = []
    facts: dict[str, Any] = {}
    with pyenv.shared_facts():  # kinds asking about the same interpreter share one read
        for module in kind_modules():
            observed = module.observe(desired, ctx)
            facts[module.KIND] = observed
            changes.extend(module.diff(desired, observed))
    free = free_space(layout.root)
    plan = Plan(tuple(changes), (), str(layout.root), free, facts, dict(versions.values))
    return Plan(
        plan.changes,
        tuple(_warnings(desired, plan)),
        plan.root,
        free,
        facts,
        plan.versions,
        desired.variants,
    )


def _shared_destinations(changes: tuple[Change, ...]) -> list[str]:
    """Model items that would place different files at one path: apply keeps the first."""
    by_dest: dict[str, list[Change]] = {}
    for c in changes:
        dest = c.dest or "?"  # "?" in a destination: the file is known only at apply
        if c.kind == "model" and c.action != "delete" and "?" not in dest and dest[-1] != "/":
            by_dest.setdefault(dest, []).append(c)
    out = []
    for dest, items in sorted(by_dest.items()):
        hashes = {str(c.details.get("sha256") or "").lower() for c in items}
        if len(items) > 1 and (len(hashes) > 1 or "" in hashes):
            ids = ", ".join(f"{c.id} [{c.origin}]" for c in items)
            out.append(
                f"{dest} is the destination of {len(items)} items ({ids}): unless they are "
                "the same file, apply places one and fails the others; give them a 'subdir'"
            )
    return out


def free_space(path: Path) -> int | None:
    """Free bytes on the filesystem that holds ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def _warnings(desired: DesiredState, plan: Plan) -> list[str]:
    out = list(desired.warnings)
    for node in desired.nodes:
        if not node.spec.ref and not node.locked_commit:
            out.append(
                f"node {node.name} ({node.origin}) is unpinned: it follows the default branch; "
                "pin it with '@<tag-or-commit>' or run `phoenix lock`"
            )
    unhashed = [
        c.id
        for c in plan.changes
        if c.kind == "model" and c.pending and c.action != "delete" and not c.details.get("sha256")
    ]
    if unhashed:
        out.append(
            f"{len(unhashed)} model(s) have no known hash yet ({', '.join(unhashed[:3])}"
            f"{', ...' if len(unhashed) > 3 else ''}): the source's hash is fetched and "
            "verified at apply; `phoenix lock` pins it ahead of time"
        )
    out += _shared_destinations(plan.changes)
    known, _unknown = plan.download_bytes()
    if plan.free_bytes is not None and known > plan.free_bytes:
        out.append(
            f"requested downloads ({known / GB:.1f} GB) exceed free space on {plan.root} "
            f"({plan.free_bytes / GB:.1f} GB)"
        )
    min_free = desired.manifest.storage.min_free_gb * GB
    if plan.free_bytes is not None and plan.free_bytes < min_free and os.path.isabs(plan.root):
        out.append(
            f"{plan.root} has {plan.free_bytes / GB:.1f} GB free; {min_free // GB} GB is "
            "recommended for FLUX (set the pod's container/volume disk to 150 GB)"
        )
    return out

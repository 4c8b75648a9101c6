"""The apply orchestrator: lock the volume, plan, apply every kind in order, re-observe.

Plan and apply are one code path: the changes applied are exactly the ones ``phoenix plan``
shows (built by :func:`provisioner.plan.build.build_plan`), and the re-observation afterwards
must find nothing left to do for every item that succeeded.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from provisioner.actions.base import ApplyContext
from provisioner.core.config import Versions
from provisioner.core.layout import Layout
from provisioner.manifest.desired import DesiredState, Secrets
from provisioner.plan.change import Change, ItemResult
from provisioner.state.store import StateStore
from provisioner.state.volume_lock import volume_lock

if TYPE_CHECKING:
    from provisioner.state.lockfile import LockFile

@dataclass(frozen=True)
class ApplyReport:
    """Per-item results, and what the re-observation still finds pending."""

    results: list[ItemResult]
    remaining: list[Change]
    #: where each item was asked for (``file:line:col``, ``env:NAME[i]``, ``state``), by id
    origins: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failed


def apply_all(
    desired: DesiredState,
    layout: Layout,
    versions: Versions,
    secrets: Secrets,
    *,
    jobs: int = 4,
    verify: bool = False,
    prune: bool = False,
    force: bool = False,
    locked: LockFile | None = None,
    on_wait: Callable[[str], None] | None = None,
    log: logging.Logger | None = None,
) -> ApplyReport:
    """Bring the workspace to ``desired``: every kind in apply order, under the volume lock.

    With ``locked``, the desired state must hash to the lock's (else :class:`LockFileError`)
    and every pinned item is fetched exactly as locked, without resolution calls. ``force``
    re-fetches models that look present; ``prune`` removes items Phoenix placed earlier that
    are no longer desired.
    """
    from provisioner.actions.kinds import applier
    from provisioner.plan.build import build_plan
    from provisioner.plan.kinds import kind_modules

    if locked is not None:
        from provisioner.state.lockfile import apply_lock, check_lock

        check_lock(desired, locked)
        desired = apply_lock(desired, locked)
    logger = log or logging.getLogger("phoenix.apply")
    with volume_lock(layout, on_wait=on_wait or logger.warning) as volume:
        plan = build_plan(desired, layout, versions, verify=verify)
        store = StateStore(layout, guard=volume.check)
        ctx = ApplyContext(
            layout, store, versions, secrets, jobs=jobs, verify=verify, force=force,
            prune=prune, lock=locked, guard=volume.check, log=logger,
            download_connections=desired.manifest.downloads.connections,
        )
        results: list[ItemResult] = []
        for module in kind_modules():
            changes = [_forced(c, force) for c in plan.changes if c.kind == module.KIND]
            changes = [c for c in changes if c.pending]
            if changes:
                results.extend(applier(module.KIND)(changes, ctx))
                volume.check()  # an item refused by the fence failed alone: stop them all
        after = build_plan(desired, layout, versions)
    acting = {"create", "update", "delete"} if prune else {"create", "update"}
    origins = {c.id: c.origin for c in plan.changes}
    return ApplyReport(results, [c for c in after.changes if c.action in acting], origins)


def _forced(change: Change, force: bool) -> Change:
    if force and change.kind == "model" and change.action == "unchanged":
        return dataclasses.replace(change, action="update", reason="--force")
    return change

"""Kind ``path`` (action half): create the missing workspace folders, private (0700).

Facts and diff: :mod:`provisioner.plan.paths`.
"""

from __future__ import annotations

from provisioner.actions.base import ApplyContext
from provisioner.plan.change import Change, ItemResult
from provisioner.plan.paths import KIND


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

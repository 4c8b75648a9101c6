"""Extra Python packages (``EXTRA_PYTHON_PACKAGES``, manifest ``packages:``) in the workspace venv.

PEP 508 is validated at plan time (a bad spec is a plan error naming the item); a requirement the
installed distributions already satisfy is unchanged and never reaches the installer; the rest
are installed together through the torch guard, one by one when the batch fails, so one bad
package does not stop the others. Facts and diff: :mod:`provisioner.plan.packages`.
"""

from __future__ import annotations

from packaging.utils import canonicalize_name

from provisioner.actions.base import ApplyContext
from provisioner.core.errors import PhoenixError
from provisioner.core.requirements import parse_requirement
from provisioner.manifest.desired import DesiredPackage
from provisioner.plan.change import Change, ItemResult
from provisioner.plan.packages import KIND
from provisioner.software import pyenv
from provisioner.software.guard import guarded_install
from provisioner.state.store import PackageRecord


def _record(ctx: ApplyContext, pkg: DesiredPackage, dists: pyenv.Distributions) -> str:
    key = canonicalize_name(parse_requirement(pkg.requirement).name)
    dist = dists.dists.get(key)
    installed = dist.version if dist else "?"
    ctx.store.put_package(PackageRecord(pkg.requirement, installed))
    return installed


def apply(changes: list[Change], ctx: ApplyContext) -> list[ItemResult]:
    """Install the pending requirements through the guard; results per requirement."""
    pending: list[DesiredPackage] = [
        c.item for c in changes if c.kind == KIND and c.pending and c.item is not None
    ]
    if not pending:
        return []
    ctx.guard()
    python = pyenv.ensure_venv(ctx.layout)
    results: list[ItemResult] = []
    try:
        outcome = guarded_install(
            python, [p.requirement for p in pending], what="packages", staging=ctx.layout.staging
        )
    except PhoenixError:
        outcome = None  # fall back to one at a time to find which one fails
    if outcome is not None:
        for pkg in pending:
            version = _record(ctx, pkg, outcome.after)
            note = "already satisfied" if pkg.requirement in outcome.skipped else "installed"
            results.append(ItemResult(pkg.id, KIND, True, f"{note} ({version})"))
        return results
    for pkg in pending:
        try:
            ctx.guard()
            one = guarded_install(
                python, [pkg.requirement], what=pkg.id, staging=ctx.layout.staging
            )
        except PhoenixError as exc:
            ctx.log.error("%s: %s", pkg.id, exc.render())
            results.append(ItemResult(pkg.id, KIND, False, exc.render()))
            continue
        version = _record(ctx, pkg, one.after)
        results.append(ItemResult(pkg.id, KIND, True, f"installed ({version})"))
    return results

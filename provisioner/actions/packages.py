"""Extra Python packages (``EXTRA_PYTHON_PACKAGES``, manifest ``packages:``) in the workspace venv.

PEP 508 is validated at plan time (a bad spec is a plan error naming the item); a requirement the
installed distributions already satisfy is unchanged and never reaches the installer; the rest
are installed together through the torch guard, one by one when the batch fails, so one bad
package does not stop the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from provisioner.actions.base import ApplyContext, ObserveContext
from provisioner.core.errors import ManifestError, PhoenixError
from provisioner.manifest.desired import DesiredPackage, DesiredState
from provisioner.plan.change import Change, ItemResult
from provisioner.software import pyenv
from provisioner.software.guard import build_guard, conflict, guarded_install
from provisioner.software.requirements import check, parse_requirement
from provisioner.state.store import PackageRecord

KIND = "package"


@dataclass(frozen=True)
class ObservedPackages:
    """Installed distributions as the workspace venv sees (or will see) them."""

    dists: pyenv.Distributions = field(default_factory=pyenv.Distributions)


def observe(desired: DesiredState, ctx: ObserveContext) -> ObservedPackages:
    """Read the installed distributions (one short child; nothing is written)."""
    if not desired.packages:
        return ObservedPackages()
    return ObservedPackages(pyenv.installed_distributions(pyenv.target_python(ctx.layout)))


def _parse(pkg: DesiredPackage) -> Requirement:
    try:
        return parse_requirement(pkg.requirement)
    except ValueError as exc:
        raise ManifestError(
            str(exc),
            where=f"{pkg.origin}: {pkg.id}",
            hint="write it as PEP 508, e.g. numpy>=1.26,<3",
        ) from exc


def diff(desired: DesiredState, facts: ObservedPackages) -> list[Change]:
    """One change per requirement (pure); raises :class:`ManifestError` for an invalid spec."""
    guard = build_guard(facts.dists, {})
    versions = facts.dists.versions()
    changes: list[Change] = []
    for pkg in desired.packages:
        req = _parse(pkg)
        verdict = check(req, versions, facts.dists.marker_env)
        details: dict[str, object] = {}
        if verdict.satisfied:
            action, reason = "unchanged", verdict.reason
        else:
            action = "create" if verdict.installed is None else "update"
            reason = verdict.reason
            problem = conflict(req, guard, facts.dists.marker_env)
            if problem:
                reason += f"; will fail: {problem}"
                details["guard"] = problem
        changes.append(
            Change(
                kind=KIND,
                action=action,  # type: ignore[arg-type]
                id=pkg.id,
                origin=pkg.origin,
                reason=reason,
                source=pkg.requirement,
                item=pkg,
                details=details,
            )
        )
    return changes


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

"""Kind ``package`` (plan half): installed distributions (read-only), the diff (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.requirements import Requirement

from provisioner.core.errors import ManifestError
from provisioner.core.requirements import check, parse_requirement
from provisioner.manifest.desired import DesiredPackage, DesiredState
from provisioner.plan.change import Change
from provisioner.plan.context import ObserveContext
from provisioner.software import pyenv
from provisioner.software.guard import build_guard, conflict

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

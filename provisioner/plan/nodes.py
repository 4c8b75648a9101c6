"""Kind ``node`` (plan half): checkouts and their requirements (read-only), the diff (pure)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.core.requirements import parse_requirements_file
from provisioner.manifest.desired import DesiredNode, DesiredState
from provisioner.plan.change import Change
from provisioner.plan.context import ObserveContext
from provisioner.software import gitops, pyenv
from provisioner.software.guard import unmet
from provisioner.state.store import NodeRecord

KIND = "node"


@dataclass(frozen=True)
class NodeFacts:
    """What is on disk for one node (read-only)."""

    name: str
    exists: bool
    is_repo: bool
    head: str | None
    record: NodeRecord | None
    requirements_sha256: str | None
    #: requirements not met by the installed distributions (PEP 508 lines only)
    unsatisfied: tuple[str, ...] = ()


@dataclass(frozen=True)
class ObservedNodes:
    """Facts for every desired node, by name, and for recorded nodes no longer desired."""

    nodes: dict[str, NodeFacts] = field(default_factory=dict)
    dropped: dict[str, NodeFacts] = field(default_factory=dict)


def requirements_sha256(node_dir: Path) -> str | None:
    """SHA256 of ``requirements.txt`` in ``node_dir``, or None when there is none."""
    try:
        return hashlib.sha256((node_dir / "requirements.txt").read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _unsatisfied(node_dir: Path, dists: pyenv.Distributions | None) -> tuple[str, ...]:
    if dists is None:
        return ()
    try:
        text = (node_dir / "requirements.txt").read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return ()
    return unmet(parse_requirements_file(text).requirements, dists)


def observe_node(
    node: DesiredNode, root: Path, record: NodeRecord | None, dists: pyenv.Distributions | None
) -> NodeFacts:
    """Facts for one node, from files only (plus ``dists`` read once by the caller)."""
    path = root / node.name
    if not path.exists():
        return NodeFacts(node.name, False, False, None, record, None)
    head = gitops.read_head(path)
    is_repo = gitops.git_dir(path) is not None
    return NodeFacts(
        node.name,
        True,
        is_repo,
        head,
        record,
        requirements_sha256(path),
        _unsatisfied(path, dists),
    )


def observe_dropped(name: str, root: Path, record: NodeRecord) -> NodeFacts:
    """Where a recorded but no longer desired checkout stands (files only)."""
    path = root / name
    if path.is_symlink():  # Phoenix never places links: someone else's, dangling or not
        return NodeFacts(name, True, False, None, record, None)
    if not path.exists():
        return NodeFacts(name, False, False, None, record, None)
    return NodeFacts(
        name, True, gitops.git_dir(path) is not None, gitops.read_head(path), record, None
    )


def observe(desired: DesiredState, ctx: ObserveContext) -> ObservedNodes:
    """Read-only facts: checkout HEADs (from files), requirements hashes, installed dists."""
    wanted = {n.name for n in desired.nodes}
    dropped = {
        name: observe_dropped(name, ctx.layout.custom_nodes, record)
        for name, record in sorted(ctx.state.nodes.items())
        if name not in wanted
    }
    if not desired.nodes:
        return ObservedNodes(dropped=dropped)
    has_reqs = any(
        (ctx.layout.custom_nodes / n.name / "requirements.txt").is_file() for n in desired.nodes
    )
    dists = pyenv.installed_distributions(pyenv.target_python(ctx.layout)) if has_reqs else None
    return ObservedNodes(
        {
            n.name: observe_node(n, ctx.layout.custom_nodes, ctx.state.nodes.get(n.name), dists)
            for n in desired.nodes
        },
        dropped,
    )


def _source(node: DesiredNode) -> str:
    return node.spec.url + (f"@{node.spec.ref}" if node.spec.ref else "")


def _pinned_commit(node: DesiredNode) -> str | None:
    ref = node.spec.ref
    return node.locked_commit or (ref if ref and gitops.HEX40.match(ref) else None)


def why_pending(node: DesiredNode, facts: NodeFacts) -> tuple[str, str] | None:
    """``(action, reason)`` when the node needs work, None when it is in place (pure)."""
    if not facts.exists:
        return "create", "not installed"
    if not facts.is_repo:
        return "update", f"custom_nodes/{node.name} exists but is not a git checkout"
    rec = facts.record
    if rec is None:
        return "update", "existing checkout not managed by Phoenix yet: check out and record"
    pinned = _pinned_commit(node)
    if rec.url != node.spec.url:
        return "update", f"URL changed: {rec.url} → {node.spec.url}"
    if rec.ref != node.spec.ref:
        return "update", f"ref changed: {rec.ref or '(default branch)'} → {node.spec.ref}"
    if pinned is not None and pinned != rec.commit:
        return "update", f"pinned commit changed: {rec.commit[:12]} → {pinned[:12]}"
    if facts.head != rec.commit:
        head = facts.head[:12] if facts.head else "unknown"
        return "update", f"HEAD is {head}, recorded {rec.commit[:12]}: check out again"
    if facts.requirements_sha256 != rec.requirements_sha256:
        return "update", "requirements.txt changed or not installed yet"
    if facts.unsatisfied:
        return "update", "requirements not satisfied: " + ", ".join(facts.unsatisfied)
    return None


def why_kept(facts: NodeFacts) -> str | None:
    """Why a dropped checkout cannot simply be removed (pure; local edits are checked at apply)."""
    assert facts.record is not None
    if not facts.is_repo:
        return "it is no longer the git checkout Phoenix placed"
    if facts.head != facts.record.commit:
        head = facts.head[:12] if facts.head else "unknown"
        return f"HEAD is {head}, Phoenix placed {facts.record.commit[:12]}"
    return None


def _removal(facts: NodeFacts) -> str:
    if not facts.exists:
        return "no longer desired; already gone from disk (--prune forgets it)"
    kept = why_kept(facts)
    if kept is not None:
        return f"no longer desired; {kept}: --prune keeps the folder and forgets it"
    return "no longer desired; would remove with --prune"


def diff(desired: DesiredState, facts: ObservedNodes) -> list[Change]:
    """One change per desired node, and a ``delete`` per recorded node no longer desired (pure)."""
    changes: list[Change] = []
    for node in desired.nodes:
        f = facts.nodes.get(node.name) or NodeFacts(node.name, False, False, None, None, None)
        pending = why_pending(node, f)
        details: dict[str, object] = {}
        if node.spec.ref is None and node.locked_commit is None:
            details["warning"] = "unpinned: no ref, the default branch is used"
        if pending is None:
            assert f.record is not None
            action, reason = "unchanged", f"at {f.record.commit[:12]}"
        else:
            action, reason = pending
        changes.append(
            Change(
                kind=KIND,
                action=action,  # type: ignore[arg-type]
                id=node.id,
                origin=node.origin,
                reason=reason,
                dest=f"custom_nodes/{node.name}",
                source=_source(node),
                item=node,
                details=details,
            )
        )
    for name, f in facts.dropped.items():
        assert f.record is not None
        changes.append(
            Change(
                kind=KIND,
                action="delete",
                id=f"node:{name}",
                origin="state",
                reason=_removal(f),
                dest=f"custom_nodes/{name}",
                source=f.record.url + (f"@{f.record.ref}" if f.record.ref else ""),
                item=f.record,
            )
        )
    return changes


"""Custom nodes: git checkouts under ``custom_nodes/<name>`` at a pinned commit, with their
requirements installed through the torch guard and ``install.py`` run like ComfyUI-Manager does.

A node whose HEAD is at the recorded commit, with the same ref and unchanged, satisfied
requirements, is unchanged: observing it reads files only and starts no git or pip process.

A checkout Phoenix recorded that the manifest no longer names is a ``delete``; ``--prune``
removes it (moved out of ``custom_nodes`` first, so ComfyUI never sees half a node) unless it
changed since it was placed: then the folder stays and Phoenix forgets it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.actions.base import ApplyContext, ObserveContext
from provisioner.core.errors import InstallError, PhoenixError
from provisioner.core.fsio import staging_dir
from provisioner.manifest.desired import DesiredNode, DesiredState
from provisioner.plan.change import Change, ItemResult
from provisioner.software import gitops, proc, pyenv
from provisioner.software.guard import guarded_install
from provisioner.software.requirements import check, parse_requirement, parse_requirements_file
from provisioner.state.store import NodeRecord

KIND = "node"
INSTALL_PY_TIMEOUT = 900.0


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
    versions = dists.versions()
    parsed = parse_requirements_file(text)
    return tuple(
        r
        for r in parsed.requirements
        if not check(parse_requirement(r), versions, dists.marker_env).satisfied
    )


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


def checkout_node(node: DesiredNode, ctx: ApplyContext) -> gitops.Checkout:
    """The git part of installing a node (safe to run for several nodes in parallel)."""
    return gitops.materialize(
        node.spec.url,
        node.spec.ref,
        ctx.layout.custom_nodes / node.name,
        ctx.layout.staging,
        locked=node.locked_commit,
        force=ctx.force,
        what=f"node {node.name}",
    )


def finish_node(node: DesiredNode, co: gitops.Checkout, ctx: ApplyContext) -> str:
    """Requirements (guarded), ``install.py``, state record; a summary line.

    Runs one node at a time (one environment). Raises a :class:`PhoenixError` naming the node.
    """
    layout = ctx.layout
    what = f"node {node.name}"
    dest = layout.custom_nodes / node.name
    notes: list[str] = []
    if co.unpinned:
        warning = f"{what} is unpinned: {node.spec.ref or 'default branch'} is at {co.commit[:12]}"
        ctx.log.warning(warning)
        notes.append("unpinned")
    record = NodeRecord(node.name, node.spec.url, node.spec.ref, co.commit, None)
    old = ctx.store.state.nodes.get(node.name)
    sha = requirements_sha256(dest)
    python = pyenv.ensure_venv(layout)
    if sha is not None:
        try:
            outcome = guarded_install(
                python,
                [],
                requirements_file=dest / "requirements.txt",
                what=what,
                staging=layout.staging,
            )
        except PhoenixError:
            ctx.store.put_node(record)  # the checkout is in place; requirements retried next run
            raise
        if outcome.ran:
            notes.append(f"installed {len(outcome.installed)} requirement(s)")
    script = dest / "install.py"
    rerun_script = co.changed or old is None or old.commit != co.commit
    if script.is_file() and rerun_script:
        try:
            result = proc.run([str(python), "install.py"], cwd=dest, timeout=INSTALL_PY_TIMEOUT)
        except proc.Timeout as exc:
            ctx.store.put_node(record)
            raise InstallError(f"{what}: install.py {exc}", where=str(script)) from exc
        if not result.ok:
            ctx.store.put_node(record)
            raise InstallError(
                f"{what}: install.py exited {result.returncode}:\n{result.tail(10)}",
                where=str(script),
            )
        notes.append("ran install.py")
    ctx.store.put_node(NodeRecord(node.name, node.spec.url, node.spec.ref, co.commit, sha))
    return f"at {co.commit[:12]}" + (f" ({', '.join(notes)})" if notes else "")


def install_node(node: DesiredNode, ctx: ApplyContext) -> str:
    """Check out, install requirements and run ``install.py`` for one node; a summary line."""
    return finish_node(node, checkout_node(node, ctx), ctx)


def _checkout_or_error(node: DesiredNode, ctx: ApplyContext) -> gitops.Checkout | PhoenixError:
    try:
        return checkout_node(node, ctx)
    except PhoenixError as exc:
        return exc


def remove_node(record: NodeRecord, ctx: ApplyContext) -> str:
    """Remove a checkout Phoenix placed that is no longer desired, and forget it; a summary.

    A folder that changed since it was placed (HEAD moved, not a checkout any more, a link, or
    local edits to tracked files, the last unless ``force``) stays. The checkout is renamed into the
    staging folder before it is deleted, so ComfyUI never loads half a node. Packages its
    requirements installed stay installed: other nodes may need them.
    """
    name = record.name
    dest = ctx.layout.custom_nodes / name
    facts = observe_dropped(name, ctx.layout.custom_nodes, record)
    if not facts.exists:
        ctx.store.drop_node(name)
        return f"custom_nodes/{name} was already gone; forgotten"
    kept = why_kept(facts)
    if kept is None and not ctx.force and gitops.is_dirty(dest):
        kept = "it has local modifications (--force removes it anyway)"
    if kept is not None:
        ctx.store.drop_node(name)
        return f"kept custom_nodes/{name}: {kept}; Phoenix no longer manages it"
    with staging_dir(ctx.layout.staging, f"prune-{name}-") as tmp:
        os.replace(dest, tmp / name)  # same filesystem: one step out of ComfyUI's sight
        ctx.store.drop_node(name)
    return f"removed custom_nodes/{name} (packages its requirements installed stay)"


def _prune(change: Change, ctx: ApplyContext) -> ItemResult:
    record: NodeRecord = change.item
    try:
        message = remove_node(record, ctx)
    except (PhoenixError, OSError) as exc:
        text = exc.render() if isinstance(exc, PhoenixError) else f"cannot remove: {exc}"
        ctx.log.error("%s: %s", change.id, text)
        return ItemResult(change.id, KIND, False, text)
    ctx.log.info("%s: %s", change.id, message)
    return ItemResult(change.id, KIND, True, message)


def apply(changes: list[Change], ctx: ApplyContext) -> list[ItemResult]:
    """Apply each pending node change; one node failing does not stop the others.

    Removals (``--prune`` only) come first; clones and fetches run in parallel (``ctx.jobs``);
    installs then run one node at a time.
    """
    todo: list[DesiredNode] = []
    results: list[ItemResult] = []
    for change in changes:
        if change.kind != KIND or not change.pending:
            continue
        if change.action == "delete":
            if ctx.prune:
                results.append(_prune(change, ctx))
            continue
        node: DesiredNode = change.item
        record = ctx.store.state.nodes.get(node.name)
        facts = observe_node(node, ctx.layout.custom_nodes, record, None)
        # re-check: another run may have done it (requirements need the installer to tell)
        if why_pending(node, facts) is None and not change.reason.startswith("requirements"):
            results.append(ItemResult(node.id, KIND, True, "already in place", node.spec.required))
            continue
        todo.append(node)
    from concurrent.futures import ThreadPoolExecutor  # apply only; plan stays light

    with ThreadPoolExecutor(max_workers=max(1, ctx.jobs), thread_name_prefix="git") as pool:
        checkouts = list(pool.map(lambda n: _checkout_or_error(n, ctx), todo))
    for node, co in zip(todo, checkouts, strict=True):
        try:
            if isinstance(co, PhoenixError):
                raise co
            message = finish_node(node, co, ctx)
        except PhoenixError as exc:
            ctx.log.error("%s: %s", node.id, exc.render())
            results.append(ItemResult(node.id, KIND, False, exc.render(), node.spec.required))
            continue
        ctx.log.info("%s: %s", node.id, message)
        results.append(ItemResult(node.id, KIND, True, message, node.spec.required))
    order = {c.id: i for i, c in enumerate(changes)}
    return sorted(results, key=lambda r: order.get(r.id, len(order)))

"""Custom nodes: git checkouts under ``custom_nodes/<name>`` at a pinned commit, with their
requirements installed through the torch guard and ``install.py`` run like ComfyUI-Manager does.

A node whose HEAD is at the recorded commit, with the same ref and unchanged, satisfied
requirements, is unchanged: observing it reads files only and starts no git or pip process.

A checkout Phoenix recorded that the manifest no longer names is a ``delete``; ``--prune``
removes it (moved out of ``custom_nodes`` first, so ComfyUI never sees half a node) unless it
changed since it was placed: then the folder stays and Phoenix forgets it.

Facts and diff: :mod:`provisioner.plan.nodes`; this module holds the effects.
"""

from __future__ import annotations

import os

from provisioner.actions.base import ApplyContext
from provisioner.core.errors import InstallError, PhoenixError
from provisioner.core.fsio import staging_dir
from provisioner.manifest.desired import DesiredNode
from provisioner.plan.change import Change, ItemResult
from provisioner.plan.nodes import (
    KIND,
    observe_dropped,
    observe_node,
    requirements_sha256,
    why_kept,
    why_pending,
)
from provisioner.software import gitops, proc, pyenv
from provisioner.software.guard import guarded_install, left_out_note
from provisioner.state.store import NodeRecord

INSTALL_PY_TIMEOUT = 900.0


def checkout_node(node: DesiredNode, ctx: ApplyContext) -> gitops.Checkout:
    """The git part of installing a node (safe to run for several nodes in parallel)."""
    ctx.guard()
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
    ctx.guard()
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
                # ComfyUI's rule: a guarded package the image lacks (torchaudio) is not fetched
                leave_out_absent=True,
            )
        except PhoenixError:
            ctx.store.put_node(record)  # the checkout is in place; requirements retried next run
            raise
        if outcome.ran:
            notes.append(f"installed {len(outcome.installed)} requirement(s)")
        if outcome.left_out:
            ctx.log.warning("%s%s", what, left_out_note(outcome.left_out))
            notes.append(f"left out {', '.join(outcome.left_out)}")
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
    ctx.guard()
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

"""Helpers for the software tests: contexts and desired states built from manifests."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from provisioner.actions.base import ApplyContext
from provisioner.core.config import Versions
from provisioner.core.layout import Layout
from provisioner.manifest.desired import DesiredNode, DesiredPackage, DesiredState
from provisioner.manifest.models import Manifest, NodeSpec
from provisioner.plan.context import ObserveContext
from provisioner.state.store import StateStore, load_state


def versions(repo: str = "file:///nonexistent", commit: str = "0" * 40) -> Versions:
    """A versions.conf stand-in."""
    return Versions({"COMFYUI_REPO": repo, "COMFYUI_COMMIT": commit}, "config/versions.conf")


def desired_of(manifest: Manifest, origin: str = "manifest.yaml") -> DesiredState:
    """The desired state of a manifest's nodes and packages (the lead's merge does more)."""
    from provisioner.software.gitops import node_name

    nodes = []
    for spec in manifest.nodes:
        name = spec.name or node_name(spec.url)
        nodes.append(DesiredNode(f"node:{name}", name, spec, origin))
    packages = [DesiredPackage(f"pkg:{req}", req, origin) for req in manifest.packages]
    return DesiredState(manifest, nodes=tuple(nodes), packages=tuple(packages))


def desired_nodes(*specs: NodeSpec, packages: Sequence[str] = ()) -> DesiredState:
    """Desired state with these nodes and packages."""
    return desired_of(Manifest(nodes=list(specs), packages=list(packages)))


def observe_ctx(layout: Layout, vers: Versions | None = None) -> ObserveContext:
    return ObserveContext(layout, load_state(layout), vers or versions())


def apply_ctx(
    layout: Layout, vers: Versions | None = None, force: bool = False, prune: bool = False
) -> ApplyContext:
    return ApplyContext(
        layout, StateStore(layout), vers or versions(), force=force, prune=prune,
        log=logging.getLogger("phoenix.test"),
    )  # fmt: skip

"""Observe and apply contexts for the kinds' tests, with a versions.conf stand-in."""

from __future__ import annotations

import logging

from provisioner.actions.base import ApplyContext
from provisioner.core.config import Versions
from provisioner.core.layout import Layout
from provisioner.plan.context import ObserveContext
from provisioner.state.store import StateStore, load_state


def versions(repo: str = "file:///nonexistent", commit: str = "0" * 40) -> Versions:
    """A versions.conf stand-in."""
    return Versions({"COMFYUI_REPO": repo, "COMFYUI_COMMIT": commit}, "config/versions.conf")


def observe_ctx(layout: Layout, vers: Versions | None = None) -> ObserveContext:
    return ObserveContext(layout, load_state(layout), vers or versions())


def apply_ctx(
    layout: Layout, vers: Versions | None = None, force: bool = False, prune: bool = False
) -> ApplyContext:
    return ApplyContext(
        layout, StateStore(layout), vers or versions(), force=force, prune=prune,
        log=logging.getLogger("phoenix.test"),
    )  # fmt: skip

"""Each kind's action half (its ``apply``), by ``KIND``; the plan halves and the order are
:data:`provisioner.plan.kinds.KIND_MODULES`."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from provisioner.actions.base import ApplyContext
from provisioner.plan.change import Change, ItemResult

Applier = Callable[[list[Change], ApplyContext], list[ItemResult]]

APPLY_MODULES: dict[str, str] = {
    "path": "provisioner.actions.paths",
    "comfyui": "provisioner.actions.comfyui",
    "package": "provisioner.actions.packages",
    "node": "provisioner.actions.nodes",
    "model": "provisioner.actions.model_apply",  # imported only when a model change is applied
}


def applier(kind: str) -> Applier:
    """The ``apply`` of ``kind``'s action module (imported on first use)."""
    fn: Applier = importlib.import_module(APPLY_MODULES[kind]).apply
    return fn

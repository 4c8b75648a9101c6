"""The kinds' plan halves (observe + diff), in apply order: paths → comfyui → packages → nodes →
models. Their action halves are listed in :data:`provisioner.actions.kinds.APPLY_MODULES`."""

from __future__ import annotations

import importlib
from types import ModuleType

KIND_MODULES: tuple[str, ...] = (
    "provisioner.plan.paths",
    "provisioner.plan.comfyui",
    "provisioner.plan.packages",
    "provisioner.plan.nodes",
    "provisioner.plan.models",
)


def kind_modules() -> list[ModuleType]:
    """Import every kind's plan module, in apply order."""
    return [importlib.import_module(name) for name in KIND_MODULES]

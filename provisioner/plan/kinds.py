"""The action kinds, in apply order: paths → comfyui → packages → nodes → models."""

from __future__ import annotations

import importlib
from types import ModuleType

KIND_MODULES: tuple[str, ...] = (
    "provisioner.actions.paths",
    "provisioner.actions.comfyui",
    "provisioner.actions.packages",
    "provisioner.actions.nodes",
    "provisioner.actions.models",
)


def kind_modules() -> list[ModuleType]:
    """Import every kind module, in apply order."""
    return [importlib.import_module(name) for name in KIND_MODULES]

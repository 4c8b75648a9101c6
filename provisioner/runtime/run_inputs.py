"""What one ``phoenix run`` is given: its options, and the default loader, planner and applier
that :func:`provisioner.runtime.run.run_pod` calls (tests inject their own). Each default
imports its layer when first called, so ``phoenix run --help`` pays for none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from provisioner.core.config import Versions
from provisioner.core.layout import Layout
from provisioner.manifest.desired import DesiredState, Secrets
from provisioner.plan.change import ItemResult
from provisioner.runtime.services import RestartPolicy
from provisioner.state.lockfile import LockFile, load_lock, lock_path_for


class ApplyReportLike(Protocol):
    """What Phoenix needs from ``provisioner.apply.apply_all``'s report."""

    @property
    def results(self) -> Sequence[ItemResult]: ...


ApplyFn = Callable[..., ApplyReportLike]
LoadFn = Callable[[str | None, dict[str, str]], tuple[DesiredState, Secrets]]


def default_apply(
    desired: DesiredState, layout: Layout, versions: Versions, secrets: Secrets, **kw: Any
) -> ApplyReportLike:
    """``provisioner.apply.apply_all``, imported when first needed."""
    from provisioner.apply import apply_all

    report: ApplyReportLike = apply_all(desired, layout, versions, secrets, **kw)
    return report


def default_load(manifest: str | None, env: dict[str, str]) -> tuple[DesiredState, Secrets]:
    """``provisioner.manifest.merge.load_desired``, imported when first needed; profile
    variants are chosen for this pod's GPU (``PHOENIX_VRAM_GIB`` first, then NVML; without
    either the plan names the VRAM it assumed)."""
    from provisioner.manifest.merge import load_desired
    from provisioner.runtime import gpu

    return load_desired(manifest, env, read_gpu=gpu.read_gpu_facts)


def load_run_lock(manifest: str | None) -> LockFile:
    """The lock file beside ``manifest`` (``phoenix lock`` wrote it) for ``run --locked``."""
    return load_lock(lock_path_for(manifest))


def default_comfy_python(layout: Layout) -> str:
    """ComfyUI's interpreter: the workspace venv's (imported when first needed)."""
    from provisioner.plan.comfyui import comfy_python

    return str(comfy_python(layout))


@dataclass
class RunOptions:
    """Inputs of one ``phoenix run`` beyond the manifest."""

    root: Path | None = None
    manifest: str | None = None
    health_host: str = "0.0.0.0"
    health_port: int | None = None
    skip_apply: bool = False
    #: apply exactly what the manifest's lock file pins (a baked image: no resolution calls)
    locked: bool = False
    jobs: int = 4
    #: the container's stop grace period: stopping and cleanup must fit in it
    grace_s: float = 10.0
    stop_timeout_s: float = 5.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    comfy_python: str | None = None
    filebrowser_binary: str | None = None
    homes: Sequence[Path] | None = None


class PlanLike(Protocol):
    """What Phoenix needs from ``provisioner.plan.build.build_plan``'s plan."""

    def digest(self) -> str: ...

    def download_bytes(self) -> tuple[int, int]: ...


PlanFn = Callable[[DesiredState, Layout, Versions], PlanLike]


def default_plan(desired: DesiredState, layout: Layout, versions: Versions) -> PlanLike:
    """``provisioner.plan.build.build_plan`` (read-only observe + diff)."""
    from provisioner.plan.build import build_plan

    return build_plan(desired, layout, versions)

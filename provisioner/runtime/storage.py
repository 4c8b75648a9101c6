"""Storage modes: a persistent volume or the pod's ephemeral disk, and the free-space check.

:func:`assess_storage` is pure: (setting, mount facts, free bytes, needed bytes) in, a
:class:`StorageReport` out. :func:`read_mount_facts` and :func:`free_bytes` are the I/O edges.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from provisioner.core.units import GB

RUNPOD_VOLUME = Path("/runpod-volume")

Mode = Literal["volume", "ephemeral"]


@dataclass(frozen=True)
class MountFacts:
    """Whether the workspace root is its own mount, and whether a serverless volume exists."""

    root: Path
    root_is_mount: bool
    runpod_volume_mounted: bool = False


@dataclass(frozen=True)
class StorageReport:
    """The chosen mode and root, why, and warnings that name the numbers."""

    mode: Mode
    root: Path
    reason: str
    free_bytes: int
    needed_bytes: int
    recommended_bytes: int
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """JSON-friendly form for ``/status`` and ``phoenix doctor``."""
        return {
            "mode": self.mode,
            "root": str(self.root),
            "reason": self.reason,
            "free_gb": round(self.free_bytes / GB, 1),
            "needed_gb": round(self.needed_bytes / GB, 1),
            "recommended_gb": round(self.recommended_bytes / GB, 1),
            "warnings": list(self.warnings),
        }


def assess_storage(
    setting: Literal["auto", "ephemeral", "volume"],
    use_volume: bool | None,
    facts: MountFacts,
    free: int,
    needed: int,
    min_free_gb: int,
    root_explicit: bool = False,
) -> StorageReport:
    """Choose the storage mode and root, and warn when space is short (pure).

    ``USE_VOLUME=true`` forces volume mode; ``auto`` takes a mounted root as a volume, and
    switches to ``/runpod-volume`` (serverless) when the root is not mounted and was not given.
    """
    root = facts.root
    warnings: list[str] = []
    if use_volume or setting == "volume":
        mode: Mode = "volume"
        why = "USE_VOLUME=true" if use_volume else "storage.mode: volume"
        if not facts.root_is_mount:
            if facts.runpod_volume_mounted and not root_explicit:
                root, why = RUNPOD_VOLUME, f"{why}; using the serverless volume {RUNPOD_VOLUME}"
            else:
                warnings.append(
                    f"{why}, but {root} is not a mount point: files are lost when the pod "
                    "stops. Attach a network volume mounted at this path"
                )
    elif setting == "ephemeral":
        mode, why = "ephemeral", "storage.mode: ephemeral"
    elif facts.root_is_mount:
        mode, why = "volume", f"{root} is a mount point (auto)"
    elif facts.runpod_volume_mounted and not root_explicit:
        mode, root, why = "volume", RUNPOD_VOLUME, f"{RUNPOD_VOLUME} is mounted (auto, serverless)"
    else:
        mode, why = "ephemeral", f"{root} is not a mount point (auto): ephemeral disk"
    recommended = min_free_gb * GB
    if needed > free:
        warnings.append(
            f"not enough space on {root}: the plan needs {needed / GB:.1f} GB more, "
            f"{free / GB:.1f} GB are free. Free space or raise the pod's disk size"
        )
    elif free < recommended:
        warnings.append(
            f"{free / GB:.1f} GB free on {root}, below the recommended {min_free_gb} GB for FLUX "
            f"models (this plan needs {needed / GB:.1f} GB). Raise the container/volume disk size"
        )
    return StorageReport(mode, root, why, free, needed, recommended, tuple(warnings))


def read_mount_facts(root: Path) -> MountFacts:
    """Mount facts for ``root`` (I/O: ``os.path.ismount``)."""
    return MountFacts(
        root=root,
        root_is_mount=os.path.ismount(root),
        runpod_volume_mounted=os.path.ismount(RUNPOD_VOLUME),
    )


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding ``path`` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free

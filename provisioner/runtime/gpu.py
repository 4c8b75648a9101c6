"""GPU facts from NVML (``pynvml`` from ``nvidia-ml-py``) and the torch architecture check.

No driver, no GPU, or ``pynvml`` failing to import is a normal path: :func:`read_gpu_facts`
returns ``None`` after a loud warning, and Phoenix runs ComfyUI in CPU mode.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from provisioner.core.errors import GPUError

log = logging.getLogger("phoenix.gpu")

GIB = 1024**3


@dataclass(frozen=True)
class GpuFacts:
    """What NVML says about the first GPU (ComfyUI uses device 0 unless told otherwise)."""

    name: str
    compute_capability: tuple[int, int]
    vram_bytes: int
    driver_version: str
    cuda_driver_version: str
    count: int = 1

    @property
    def sm(self) -> str:
        """The architecture name torch uses, e.g. ``sm_120`` for compute capability 12.0."""
        major, minor = self.compute_capability
        return f"sm_{major}{minor}"

    @property
    def cc_text(self) -> str:
        """Compute capability as ``12.0``."""
        return "{}.{}".format(*self.compute_capability)

    @property
    def vram_gib(self) -> float:
        return self.vram_bytes / GIB

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form for ``/status`` and ``phoenix doctor``."""
        data = asdict(self)
        data["compute_capability"] = self.cc_text
        data["vram_gib"] = round(self.vram_gib, 1)
        return data


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def cuda_version_text(value: int) -> str:
    """NVML's integer CUDA driver version (``12080``) as ``12.8``."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def read_gpu_facts() -> GpuFacts | None:
    """Ask NVML for GPU 0's facts; ``None`` (with a warning) when there is no usable GPU."""
    try:
        import pynvml
    except Exception as exc:  # ImportError, or a broken install raising anything at import
        log.warning("GPU: cannot import pynvml (%s); running ComfyUI on the CPU", exc)
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # pynvml.NVMLError: library not found, driver not loaded, ...
        log.warning(
            "GPU: no NVIDIA driver or GPU visible (%s); running ComfyUI on the CPU (slow). "
            "On RunPod, pick a GPU pod; locally, run the container with --gpus all",
            exc,
        )
        return None
    try:
        count = int(pynvml.nvmlDeviceGetCount())
        if count < 1:
            log.warning("GPU: NVML sees no GPU; running ComfyUI on the CPU (slow)")
            return None
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
        return GpuFacts(
            name=_text(pynvml.nvmlDeviceGetName(handle)),
            compute_capability=(int(major), int(minor)),
            vram_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
            driver_version=_text(pynvml.nvmlSystemGetDriverVersion()),
            cuda_driver_version=cuda_version_text(int(pynvml.nvmlSystemGetCudaDriverVersion())),
            count=count,
        )
    except Exception as exc:
        log.warning("GPU: NVML query failed (%s); running ComfyUI on the CPU (slow)", exc)
        return None
    finally:
        # shutting down a half-initialised NVML must not mask the result
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


_ARCH = re.compile(r"^(sm|compute)_(\d+)(\d)([a-z]?)$")


def _parse_arch(arch: str) -> tuple[str, int, int, str] | None:
    match = _ARCH.match(arch.strip())
    if not match:
        return None
    kind, major, minor, suffix = match.groups()
    return kind, int(major), int(minor), suffix


def arch_supported(cc: tuple[int, int], arch_list: Sequence[str]) -> bool:
    """True when torch's ``arch_list`` has code that runs on compute capability ``cc``.

    A cubin (``sm_XY``) runs on the same major version with an equal or newer minor; an
    arch-specific cubin (``sm_90a``) only on exactly that version; PTX (``compute_XY``) is
    JIT-compiled for any newer GPU.
    """
    major, minor = cc
    for arch in arch_list:
        parsed = _parse_arch(arch)
        if parsed is None:
            continue
        kind, a_major, a_minor, suffix = parsed
        if kind == "sm":
            if suffix and (a_major, a_minor) == (major, minor):
                return True
            if not suffix and a_major == major and a_minor <= minor:
                return True
        elif (a_major, a_minor) <= (major, minor):
            return True
    return False


def check_arch(facts: GpuFacts, arch_list: Sequence[str]) -> None:
    """Raise :class:`GPUError` when the image's torch has no kernels for this GPU.

    This is the classic RTX 5090 trap: a torch built for CUDA ≤ 12.6 stops at ``sm_90`` and
    every kernel launch fails with "no kernel image is available for execution on the device".
    """
    if not arch_list:
        raise GPUError(
            f"torch in this image reports no CUDA architectures, but a {facts.name} "
            f"({facts.sm}) is present",
            where="torch.cuda.get_arch_list()",
            hint="the image's torch is a CPU-only build or cannot see the driver; use the "
            "NGC PyTorch base image pinned in config/versions.conf",
        )
    if not arch_supported(facts.compute_capability, arch_list):
        raise GPUError(
            f"torch in this image has no kernels for the {facts.name} (compute capability "
            f"{facts.cc_text}, {facts.sm}); it was built for {', '.join(arch_list)}. ComfyUI "
            "would fail with 'CUDA error: no kernel image is available for execution on the "
            "device'",
            where="torch.cuda.get_arch_list()",
            hint=f"use a torch build that includes {facts.sm} (for RTX 50xx / Blackwell: CUDA "
            "12.8+ builds, e.g. the NGC PyTorch image pinned in config/versions.conf), or run "
            "on a GPU this torch supports",
        )

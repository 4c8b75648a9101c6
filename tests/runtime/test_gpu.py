"""GPU facts: NVML absent is a normal path; the torch arch check explains the RTX 5090 trap."""

from __future__ import annotations

import logging
import sys

import pytest

from provisioner.core.errors import GPUError
from provisioner.runtime.gpu import (
    GpuFacts,
    arch_supported,
    check_arch,
    cuda_version_text,
    read_gpu_facts,
)

RTX5090 = GpuFacts("NVIDIA GeForce RTX 5090", (12, 0), 32 * 1024**3, "575.57.08", "12.9")
CU124_ARCHS = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
CU128_ARCHS = [*CU124_ARCHS, "sm_100", "sm_120"]


def test_no_driver_here_is_a_warning_and_none(caplog: pytest.LogCaptureFixture) -> None:
    # This machine has pynvml installed but no NVIDIA driver: nvmlInit fails for real.
    with caplog.at_level(logging.WARNING, logger="phoenix.gpu"):
        assert read_gpu_facts() is None
    assert "CPU" in caplog.text


def test_pynvml_import_failure_is_a_warning_and_none(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    with caplog.at_level(logging.WARNING, logger="phoenix.gpu"):
        assert read_gpu_facts() is None
    assert "cannot import pynvml" in caplog.text


@pytest.mark.parametrize(
    ("cc", "archs", "ok"),
    [
        ((12, 0), CU124_ARCHS, False),
        ((12, 0), CU128_ARCHS, True),
        ((8, 9), CU124_ARCHS, True),  # sm_86 cubin runs on 8.9
        ((9, 0), ["sm_80", "sm_90a"], True),
        ((10, 0), ["sm_90a"], False),
        ((12, 0), ["sm_80", "compute_90"], True),  # PTX JIT
        ((7, 5), ["sm_80", "sm_90"], False),
        ((8, 0), ["garbage"], False),
    ],
)
def test_arch_supported(cc: tuple[int, int], archs: list[str], ok: bool) -> None:
    assert arch_supported(cc, archs) is ok


def test_check_arch_explains_no_kernel_image() -> None:
    with pytest.raises(GPUError) as err:
        check_arch(RTX5090, CU124_ARCHS)
    text = err.value.render()
    assert "no kernel image is available" in text and "sm_120" in text
    assert "12.8" in (err.value.hint or "")
    check_arch(RTX5090, CU128_ARCHS)


def test_check_arch_cpu_only_torch() -> None:
    with pytest.raises(GPUError, match="no CUDA architectures"):
        check_arch(RTX5090, [])


def test_facts_json_and_helpers() -> None:
    assert cuda_version_text(12080) == "12.8" and cuda_version_text(13000) == "13.0"
    data = RTX5090.to_json()
    assert data["compute_capability"] == "12.0" and data["vram_gib"] == 32.0
    assert RTX5090.sm == "sm_120"

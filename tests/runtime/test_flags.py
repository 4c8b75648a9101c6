"""Flag selection: a table of GPUs × flash_attn present/absent, manifest overrides, user args."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.manifest.models import ComfyUIConfig, Performance
from provisioner.runtime.flags import (
    UNET_DTYPE_FLAGS,
    FlagChoice,
    InstalledFeatures,
    choose_flags,
    emittable_flags,
)
from provisioner.runtime.gpu import GpuFacts
from tests.support.paths import FIXTURES

DATA = FIXTURES / "cli_flags"
MIB = 1024**2

RTX5090 = GpuFacts("NVIDIA GeForce RTX 5090", (12, 0), 32607 * MIB, "575.57.08", "12.9")
RTX4090 = GpuFacts("NVIDIA GeForce RTX 4090", (8, 9), 24564 * MIB, "550.127.05", "12.4")
A100 = GpuFacts("NVIDIA A100-SXM4-80GB", (8, 0), 81920 * MIB, "535.183.01", "12.2")
T4 = GpuFacts("Tesla T4", (7, 5), 15360 * MIB, "535.183.01", "12.2")

FLASH = InstalledFeatures(flash_attn="2.7.4", torch="2.7.0")
NO_FLASH = InstalledFeatures(torch="2.7.0")
BASE = ["--listen", "0.0.0.0", "--port", "8188"]
SDPA, FA = "--use-pytorch-cross-attention", "--use-flash-attention"

TABLE = [
    ("rtx5090", RTX5090, FLASH, [SDPA, "--bf16-unet"]),
    ("rtx5090", RTX5090, NO_FLASH, [SDPA, "--bf16-unet"]),
    ("rtx4090", RTX4090, FLASH, [FA, "--fp8_e4m3fn-unet"]),
    ("rtx4090", RTX4090, NO_FLASH, [SDPA, "--fp8_e4m3fn-unet"]),
    ("a100-80", A100, FLASH, [FA, "--bf16-unet", "--highvram"]),
    ("a100-80", A100, NO_FLASH, [SDPA, "--bf16-unet", "--highvram"]),
    ("t4", T4, FLASH, [SDPA, "--fp8_e4m3fn-unet", "--lowvram"]),
    ("t4", T4, NO_FLASH, [SDPA, "--fp8_e4m3fn-unet", "--lowvram"]),
    ("no-gpu", None, FLASH, ["--cpu"]),
    ("no-gpu", None, NO_FLASH, ["--cpu"]),
]


@pytest.mark.parametrize(("label", "gpu", "packages", "expected"), TABLE)
def test_flag_table(
    label: str, gpu: GpuFacts | None, packages: InstalledFeatures, expected: list[str]
) -> None:
    comfy = ComfyUIConfig(args=["--preview-method", "auto"])
    choice = choose_flags(gpu, comfy.performance, packages, comfy)
    assert list(choice.args) == [*BASE, *expected, "--preview-method", "auto"], label
    emitted = [r.flag for r in choice.reasons if r.flag.startswith("--") and " " not in r.flag]
    assert emitted == expected
    assert all(r.reason for r in choice.reasons)


def test_bf16_only_from_cc_8() -> None:
    big_old = GpuFacts("Tesla V100-SXM2-32GB", (7, 0), 32768 * MIB, "535", "12.2")
    choice = choose_flags(big_old, Performance(), NO_FLASH, ComfyUIConfig())
    assert "--bf16-unet" not in choice.args
    assert any("no bf16 before cc 8.0" in r.reason for r in choice.reasons)


def test_reasons_name_the_gpu_and_why() -> None:
    choice = choose_flags(RTX5090, Performance(), FLASH, ComfyUIConfig())
    by_flag = {r.flag: r.reason for r in choice.reasons}
    assert "no kernels for sm_120" in by_flag[SDPA]
    assert "RTX 5090" in by_flag["--bf16-unet"]


def test_flash_requested_without_package_falls_back_with_warning() -> None:
    perf = Performance(attention="flash")
    choice = choose_flags(RTX4090, perf, NO_FLASH, ComfyUIConfig(performance=perf))
    assert SDPA in choice.args and FA not in choice.args
    assert any("flash requested" in w for w in choice.warnings)


@pytest.mark.parametrize(
    ("perf", "flag"),
    [
        (Performance(attention="sdpa"), SDPA),
        (Performance(attention="split"), "--use-split-cross-attention"),
        (Performance(attention="quad"), "--use-quad-cross-attention"),
        (Performance(unet_dtype="fp16"), "--fp16-unet"),
        (Performance(unet_dtype="fp8_e5m2"), "--fp8_e5m2-unet"),
        (Performance(unet_dtype="fp32"), "--fp32-unet"),
        (Performance(vram="gpu-only"), "--gpu-only"),
        (Performance(vram="low"), "--lowvram"),
        (Performance(vram="none"), "--novram"),
        (Performance(vram="cpu"), "--cpu"),
    ],
)
def test_manifest_overrides(perf: Performance, flag: str) -> None:
    choice = choose_flags(A100, perf, FLASH, ComfyUIConfig(performance=perf))
    assert flag in choice.args


def test_vram_normal_emits_no_removed_flag() -> None:
    perf = Performance(vram="normal")
    choice = choose_flags(A100, perf, FLASH, ComfyUIConfig(performance=perf))
    assert "--normalvram" not in choice.args and "--highvram" not in choice.args


def test_sage_needs_its_package() -> None:
    perf = Performance(attention="sage")
    with_sage = InstalledFeatures(sageattention="2.1.1")
    assert "--use-sage-attention" in choose_flags(A100, perf, with_sage, ComfyUIConfig()).args
    fallback = choose_flags(A100, perf, NO_FLASH, ComfyUIConfig())
    assert SDPA in fallback.args and fallback.warnings


def test_user_args_own_their_family_and_come_last() -> None:
    comfy = ComfyUIConfig(args=["--fp16-unet", "--use-sage-attention", "--novram"])
    choice: FlagChoice = choose_flags(A100, comfy.performance, FLASH, comfy)
    assert list(choice.args) == [*BASE, "--fp16-unet", "--use-sage-attention", "--novram"]
    assert sum("left to comfyui.args" in r.reason for r in choice.reasons) == 3


def test_listen_and_port_from_manifest() -> None:
    comfy = ComfyUIConfig(listen="127.0.0.1", port=9000)
    assert choose_flags(None, comfy.performance, NO_FLASH, comfy).args[:4] == (
        "--listen",
        "127.0.0.1",
        "--port",
        "9000",
    )


def _flags_at(name: str) -> set[str]:
    lines = (DATA / name).read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def _real_flags() -> set[str]:
    """Flags accepted by the pinned ComfyUI, a newer one and an older release line."""
    return (
        _flags_at("comfyui_cli_flags_pinned.txt")
        & _flags_at("comfyui_cli_flags.txt")
        & _flags_at("comfyui_cli_flags_689db36.txt")
    )


def test_recorded_flags_are_those_of_the_pinned_commit() -> None:
    from provisioner.core.config import load_versions

    header = (DATA / "comfyui_cli_flags_pinned.txt").read_text().splitlines()[1]
    assert header.endswith(load_versions().comfyui_commit)


def test_every_emittable_flag_exists_in_real_comfyui() -> None:
    real = _real_flags()
    assert emittable_flags() <= real, emittable_flags() - real
    assert "--base-directory" in real
    assert "--normalvram" not in _flags_at("comfyui_cli_flags.txt")
    assert "--normalvram" in _flags_at("comfyui_cli_flags_689db36.txt")


def test_table_flags_exist_in_real_comfyui() -> None:
    real = _real_flags()
    for _label, gpu, packages, _ in TABLE:
        for perf in (Performance(), Performance(attention="flash", vram="high")):
            choice = choose_flags(gpu, perf, packages, ComfyUIConfig(performance=perf))
            assert {a for a in choice.args if a.startswith("--")} <= real


#: (GPU, what the chosen variant stores, the weight dtype flag expected or None for none)
WEIGHTS_TABLE = [
    ("rtx5090-fp8", RTX5090, "fp8", None),
    ("rtx5090-gguf", RTX5090, "gguf", None),
    ("rtx5090-bf16", RTX5090, "bf16", "--bf16-unet"),
    ("rtx5090-none", RTX5090, None, "--bf16-unet"),
    ("rtx4090-fp8", RTX4090, "fp8", None),
    ("rtx4090-none", RTX4090, None, "--fp8_e4m3fn-unet"),
    ("a100-bf16", A100, "bf16", "--bf16-unet"),
    ("a100-fp8", A100, "fp8", None),
    ("t4-gguf", T4, "gguf", None),
]


@pytest.mark.parametrize(("label", "gpu", "weights", "flag"), WEIGHTS_TABLE)
def test_weight_flag_follows_the_variant(
    label: str, gpu: GpuFacts, weights: str | None, flag: str | None
) -> None:
    choice = choose_flags(gpu, Performance(), NO_FLASH, ComfyUIConfig(), weights)
    dtype = [a for a in choice.args if a in UNET_DTYPE_FLAGS]
    assert dtype == ([flag] if flag else []), label
    if weights in ("fp8", "gguf"):
        assert any(f"stores {weights} weights" in r.reason.lower() for r in choice.reasons), label
    assert {a for a in choice.args if a.startswith("--")} <= _real_flags()


def test_manifest_dtype_over_a_quantized_variant_warns() -> None:
    perf = Performance(unet_dtype="bf16")
    choice = choose_flags(RTX5090, perf, NO_FLASH, ComfyUIConfig(performance=perf), "fp8")
    assert "--bf16-unet" in choice.args
    assert any("overrides the chosen variant's fp8 weights" in w for w in choice.warnings)


def test_flux2_on_a_5090_gets_no_bf16_upcast(tmp_path: Path) -> None:
    """The whole path: variant chosen for 32 GiB -> launch_weights -> launch_args."""
    from provisioner.core.layout import Layout
    from provisioner.manifest.merge import merge
    from provisioner.manifest.variants import launch_weights
    from provisioner.runtime.launch import launch_args

    env = {"HF_REPOS_TO_DOWNLOAD": "black-forest-labs/FLUX.2-dev", "PHOENIX_VRAM_GIB": "32"}
    desired = merge(None, None, env)
    weights = launch_weights(desired.variants)
    assert weights == "fp8"
    comfy = desired.manifest.comfyui
    launch = launch_args(
        RTX5090, NO_FLASH, comfy, Layout(tmp_path), None, tmp_path / "x.yaml", weights
    )
    assert "--bf16-unet" not in launch.args and "--fp8_e4m3fn-unet" not in launch.args
    plain = launch_args(RTX5090, NO_FLASH, comfy, Layout(tmp_path), None, tmp_path / "x.yaml")
    assert "--bf16-unet" in plain.args

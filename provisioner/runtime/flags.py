"""ComfyUI launch flags as a pure function of GPU facts, manifest performance and packages.

Every flag comes with its reason, printed at start and reported by ``/status``. Flags that
:func:`choose_flags` can emit must exist in ComfyUI's ``comfy/cli_args.py`` at the pinned
commit (a test checks them against ``tests/fixtures/cli_flags/comfyui_cli_flags.txt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from provisioner.manifest.models import ComfyUIConfig, Performance
from provisioner.runtime.gpu import GpuFacts

#: ComfyUI's mutually exclusive groups that Phoenix chooses from (user args win per group).
ATTENTION_FLAGS = (
    "--use-split-cross-attention",
    "--use-quad-cross-attention",
    "--use-pytorch-cross-attention",
    "--use-sage-attention",
    "--use-flash-attention",
)
UNET_DTYPE_FLAGS = (
    "--fp32-unet",
    "--fp64-unet",
    "--bf16-unet",
    "--fp16-unet",
    "--fp8_e4m3fn-unet",
    "--fp8_e5m2-unet",
    "--fp8_e8m0fnu-unet",
)
VRAM_FLAGS = ("--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram", "--cpu")

#: FlashAttention-2 ships kernels for Ampere, Ada and Hopper only (compute capability 8.0-9.x);
#: on Blackwell (sm_100, sm_120) and older GPUs its kernels fail at the first call.
FLASH_MIN_CC = (8, 0)
FLASH_MAX_CC = (9, 9)
BF16_MIN_CC = (8, 0)

#: VRAM tiers (GiB of total VRAM as NVML reports it). The FLUX.1-dev transformer is 23.8 GB in
#: bf16, so it fits beside activations only from ~28 GiB; fp8 weights halve it.
FULL_PRECISION_MIN_GIB = 28.0
FP8_NORMAL_MIN_GIB = 20.0
LOWVRAM_MIN_GIB = 10.0
HIGHVRAM_MIN_GIB = 48.0

_ATTENTION = {
    "flash": "--use-flash-attention",
    "sdpa": "--use-pytorch-cross-attention",
    "sage": "--use-sage-attention",
    "split": "--use-split-cross-attention",
    "quad": "--use-quad-cross-attention",
}
_UNET = {
    "bf16": "--bf16-unet",
    "fp16": "--fp16-unet",
    "fp8_e4m3fn": "--fp8_e4m3fn-unet",
    "fp8_e5m2": "--fp8_e5m2-unet",
    "fp32": "--fp32-unet",
}
_VRAM = {
    "gpu-only": "--gpu-only",
    "high": "--highvram",
    "low": "--lowvram",
    "none": "--novram",
    "cpu": "--cpu",
}


@dataclass(frozen=True)
class InstalledFeatures:
    """Versions of the optional packages in ComfyUI's interpreter (``None`` = not installed)."""

    flash_attn: str | None = None
    sageattention: str | None = None
    xformers: str | None = None
    torch: str | None = None
    torch_cuda: str | None = None
    torch_arch_list: tuple[str, ...] | None = None
    python: str | None = None


@dataclass(frozen=True)
class FlagReason:
    """One decision: the flag emitted ("" when the decision was to emit none) and why."""

    flag: str
    reason: str


@dataclass(frozen=True)
class FlagChoice:
    """ComfyUI arguments in order (Phoenix's, then the user's ``comfyui.args``), with reasons."""

    args: tuple[str, ...]
    reasons: tuple[FlagReason, ...] = ()
    warnings: tuple[str, ...] = field(default=())


def _user_sets(user_args: Sequence[str], family: Sequence[str]) -> str | None:
    for arg in user_args:
        name = arg.split("=", 1)[0]
        if name in family:
            return name
    return None


def _flash_problem(gpu: GpuFacts, packages: InstalledFeatures) -> str | None:
    """Why FlashAttention cannot run here, or ``None`` when it can."""
    if not packages.flash_attn:
        return "flash_attn is not installed"
    if not FLASH_MIN_CC <= gpu.compute_capability <= FLASH_MAX_CC:
        return f"flash_attn {packages.flash_attn} has no kernels for {gpu.sm}"
    return None


def _attention(
    gpu: GpuFacts, perf: Performance, packages: InstalledFeatures
) -> tuple[str, str, list[str]]:
    warnings: list[str] = []
    want = perf.attention
    if want in ("auto", "flash"):
        why = _flash_problem(gpu, packages)
        if why is None:
            origin = "auto" if want == "auto" else "manifest attention: flash"
            return (
                "--use-flash-attention",
                f"{origin}; flash_attn {packages.flash_attn} supports {gpu.sm}",
                warnings,
            )
        if want == "flash":
            warnings.append(f"attention: flash requested but {why}; using PyTorch SDPA instead")
        return "--use-pytorch-cross-attention", f"PyTorch SDPA: {why}", warnings
    if want == "sage":
        if packages.sageattention:
            return "--use-sage-attention", "manifest attention: sage", warnings
        warnings.append("attention: sage requested but sageattention is not installed; using SDPA")
        return "--use-pytorch-cross-attention", "PyTorch SDPA: sageattention missing", warnings
    if want == "xformers":
        if packages.xformers:
            return "", "manifest attention: xformers (ComfyUI uses it when installed)", warnings
        warnings.append("attention: xformers requested but not installed; using SDPA")
        return "--use-pytorch-cross-attention", "PyTorch SDPA: xformers missing", warnings
    return _ATTENTION[want], f"manifest attention: {want}", warnings


#: Why a variant's stored weights get no dtype flag. At ComfyUI v0.3.77 ``--bf16-unet`` (and
#: every other ``--*-unet``) overrides the stored dtype (comfy/model_management.py unet_dtype), so
#: forcing one would upcast fp8 weights (twice the VRAM) or fight ComfyUI-GGUF's own loader.
_STORED = {
    "fp8": "profile variant stores fp8 weights: no --*-unet flag (it would recast them), "
    "ComfyUI computes with the stored dtype",
    "gguf": "profile variant stores GGUF weights: no --*-unet flag, ComfyUI-GGUF's "
    "UnetLoaderGGUF dequantizes them itself",
}


def _unet(
    gpu: GpuFacts, perf: Performance, weights: str | None = None
) -> tuple[FlagReason, list[str]]:
    warnings: list[str] = []
    gib = gpu.vram_gib
    bf16 = gpu.compute_capability >= BF16_MIN_CC
    size = f"{gpu.name} ({gib:.1f} GiB, cc {gpu.cc_text})"
    # weights
    if perf.unet_dtype != "auto":
        flag = _UNET[perf.unet_dtype]
        if perf.unet_dtype == "bf16" and not bf16:
            warnings.append(f"unet_dtype bf16 requested but {size} has no native bf16 (< cc 8.0)")
        if weights in _STORED:
            warnings.append(
                f"unet_dtype {perf.unet_dtype} overrides the chosen variant's {weights} weights"
            )
        return FlagReason(flag, f"manifest unet_dtype: {perf.unet_dtype}"), warnings
    if weights in _STORED:
        return FlagReason("", f"{size}: {_STORED[weights]}"), warnings
    if gib >= FULL_PRECISION_MIN_GIB:
        if bf16:
            return FlagReason("--bf16-unet", f"{size}: bf16 supported, weights fit"), warnings
        return FlagReason("", f"{size}: no bf16 before cc 8.0; ComfyUI picks the dtype"), warnings
    why = f"{size}: < {FULL_PRECISION_MIN_GIB:g} GiB, FLUX weights stored in fp8"
    return FlagReason("--fp8_e4m3fn-unet", why), warnings


def _vram(gpu: GpuFacts, perf: Performance) -> FlagReason:
    gib = gpu.vram_gib
    size = f"{gpu.name} ({gib:.1f} GiB)"
    if perf.vram == "normal":
        return FlagReason("", "manifest vram: normal (ComfyUI's default; --normalvram is gone)")
    if perf.vram != "auto":
        return FlagReason(_VRAM[perf.vram], f"manifest vram: {perf.vram}")
    if gib >= HIGHVRAM_MIN_GIB:
        return FlagReason("--highvram", f"{size}: ≥ {HIGHVRAM_MIN_GIB:g} GiB, keep models loaded")
    if gib >= FP8_NORMAL_MIN_GIB:
        return FlagReason("", f"{size}: ComfyUI's normal VRAM management")
    if gib >= LOWVRAM_MIN_GIB:
        return FlagReason("--lowvram", f"{size}: < {FP8_NORMAL_MIN_GIB:g} GiB")
    return FlagReason("--novram", f"{size}: < {LOWVRAM_MIN_GIB:g} GiB")


def choose_flags(
    gpu: GpuFacts | None,
    perf: Performance,
    packages: InstalledFeatures,
    comfy: ComfyUIConfig,
    weights: str | None = None,
) -> FlagChoice:
    """ComfyUI's arguments for this pod: listen/port, attention, weights, VRAM, then user args.

    ``weights`` is what the chosen profile variants store (``bf16``, ``fp8``, ``gguf``: see
    :func:`provisioner.manifest.variants.launch_weights`); for ``fp8`` and ``gguf`` no weight
    dtype flag is chosen. ``None`` (no profile variant) keeps the VRAM rule.
    Pure: the same inputs give the same flags. A flag family the user sets in ``comfyui.args``
    is left to the user (ComfyUI's groups are mutually exclusive); the user's args come last.
    """
    user = list(comfy.args)
    reasons: list[FlagReason] = [
        FlagReason(f"--listen {comfy.listen}", "manifest comfyui.listen"),
        FlagReason(f"--port {comfy.port}", "manifest comfyui.port"),
    ]
    args: list[str] = ["--listen", comfy.listen, "--port", str(comfy.port)]
    warnings: list[str] = []

    decided: list[FlagReason] = []
    if gpu is None:
        if not _user_sets(user, VRAM_FLAGS):
            decided.append(FlagReason("--cpu", "no NVIDIA GPU visible: CPU mode (slow)"))
        tuned = perf.attention, perf.unet_dtype
        if tuned != ("auto", "auto") or perf.vram not in ("auto", "cpu"):
            warnings.append("no GPU: comfyui.performance settings are ignored in CPU mode")
    else:
        family_user = {
            "attention": _user_sets(user, ATTENTION_FLAGS),
            "unet": _user_sets(user, UNET_DTYPE_FLAGS),
            "vram": _user_sets(user, VRAM_FLAGS),
        }
        if family_user["attention"]:
            named = family_user["attention"]
            decided.append(FlagReason("", f"attention left to comfyui.args {named}"))
        else:
            flag, why, warn = _attention(gpu, perf, packages)
            decided.append(FlagReason(flag, why))
            warnings.extend(warn)
        unet, warn = _unet(gpu, perf, weights)
        warnings.extend(warn)
        for fam, item in (("unet", unet), ("vram", _vram(gpu, perf))):
            if family_user[fam]:
                decided.append(FlagReason("", f"{fam} left to comfyui.args {family_user[fam]}"))
            else:
                decided.append(item)
    for item in decided:
        if item.flag:
            args.append(item.flag)
    reasons.extend(decided)
    if user:
        args.extend(user)
        reasons.append(FlagReason(" ".join(user), "manifest comfyui.args (appended last)"))
    return FlagChoice(tuple(args), tuple(reasons), tuple(warnings))


def emittable_flags() -> frozenset[str]:
    """Every option string :func:`choose_flags` can emit on its own (not the user's args)."""
    flags = {"--listen", "--port", "--cpu", "--bf16-unet", "--fp8_e4m3fn-unet"}
    flags.update(_ATTENTION.values(), _UNET.values(), _VRAM.values())
    flags.update({"--highvram", "--lowvram", "--novram"})
    return frozenset(flags)

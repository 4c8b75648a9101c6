"""Variant selection: which file set of a profiled repo (bf16, fp8, GGUF) fits the GPU.

Pure: :func:`choose_variant` is a function of the profile, the VRAM and what was asked for.
The VRAM comes from ``--vram-gib`` / ``PHOENIX_VRAM_GIB`` (a plan for another GPU) or from
NVML at apply (:func:`vram_from_gpu`); without either, ``auto`` takes the profile's first
variant that a 32 GiB card (the RTX 5090 Phoenix targets) can run, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from provisioner.core.errors import EnvError
from provisioner.manifest.desired import DesiredModel, DesiredNode, VariantChoice
from provisioner.manifest.models import HFModel, NodeSpec
from provisioner.manifest.profiles import Profile, Variant

ENV_VAR = "PHOENIX_VRAM_GIB"
AUTO = "auto"
#: what ``auto`` assumes when no VRAM is known: the RTX 5090's 32 GiB (Phoenix's first target)
ASSUMED_GIB = 32.0


@dataclass(frozen=True)
class VramFact:
    """Total VRAM in GiB and where that figure came from."""

    gib: float
    origin: str


class NoFit(ValueError):
    """The requested variant (or, with ``auto``, every variant) needs more VRAM than there is,
    or the name is not one of the profile's variants."""


def parse_vram(text: str) -> float:
    """A VRAM figure in GiB (``32``, ``23.5``); ``ValueError`` unless a positive number."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a positive number of GiB such as 32, found {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive number of GiB such as 32, found {text!r}")
    return value


def vram_from_env(env: Mapping[str, str]) -> VramFact | None:
    """``PHOENIX_VRAM_GIB`` (``--vram-gib`` sets it), or None when unset or empty."""
    raw = env.get(ENV_VAR, "")
    if not raw.strip():
        return None
    try:
        return VramFact(parse_vram(raw), f"env:{ENV_VAR}")
    except ValueError as exc:
        raise EnvError(
            str(exc),
            where=f"env:{ENV_VAR}",
            hint="give the GPU's VRAM in GiB, e.g. 32 for an "
            "RTX 5090, or unset it to use the GPU's own figure at apply",
        ) from None


def vram_from_gpu(name: str, vram_bytes: int) -> VramFact:
    """The VRAM NVML reports for GPU 0."""
    return VramFact(vram_bytes / 1024**3, f"GPU 0: {name}, NVML")


def _gib(value: float) -> str:
    return f"{value:g} GiB"


def choose_variant(
    profile: Profile, vram: VramFact | None, requested: str | None = AUTO
) -> tuple[str, str]:
    """The variant name to place and why, e.g. ``("fp8", "32 GiB: fp8; bf16 needs 64 GiB")``.

    ``auto`` takes the first (best) variant whose ``vram_gib`` fits; a named variant is taken
    when it fits or when no VRAM is known. Raises :class:`NoFit` otherwise, naming what would.
    """
    names = list(profile.variants)
    want = requested or AUTO
    if want != AUTO and want not in profile.variants:
        raise NoFit(f"variant {want!r} is not one of {', '.join([AUTO, *names])}")
    if want != AUTO:
        need = profile.variants[want].vram_gib
        if vram is None:
            return want, f"requested {want} (needs {_gib(need)}; VRAM not known here)"
        if need > vram.gib:
            fitting = [n for n in names if profile.variants[n].vram_gib <= vram.gib]
            fix = f"use variant: auto or {fitting[0]}" if fitting else "use a larger GPU"
            raise NoFit(
                f"variant {want} needs {_gib(need)}, and {vram.origin} has {_gib(_round(vram))}; "
                f"{fix}"
            )
        return want, f"requested {want}; {_gib(_round(vram))} ({vram.origin}) fits {_gib(need)}"
    gib = vram.gib if vram is not None else ASSUMED_GIB
    skipped: list[str] = []
    for name in names:
        need = profile.variants[name].vram_gib
        if need <= gib:
            return name, _why(name, vram, skipped, profile)
        skipped.append(name)
    smallest = min(names, key=lambda n: profile.variants[n].vram_gib)
    where = f"{vram.origin} has {_gib(_round(vram))}" if vram else f"{_gib(gib)} assumed"
    raise NoFit(
        f"no variant fits: {where}, and the smallest, {smallest}, needs "
        f"{_gib(profile.variants[smallest].vram_gib)}"
    )


def _round(vram: VramFact) -> float:
    return round(vram.gib, 1)


def _why(name: str, vram: VramFact | None, skipped: list[str], profile: Profile) -> str:
    if vram is None:
        head = (
            f"VRAM not known (no --vram-gib, {ENV_VAR} or GPU): {name} for a "
            f"{_gib(ASSUMED_GIB)} GPU"
        )
    else:
        head = f"{_gib(_round(vram))} ({vram.origin}): {name}"
    needs = [f"{s} needs {_gib(profile.variants[s].vram_gib)}" for s in skipped]
    return "; ".join([head, *needs])


def expand(
    entry: HFModel, profile: Profile, vram: VramFact | None, origin: str
) -> tuple[VariantChoice, list[DesiredModel]]:
    """The chosen variant of a profiled entry and one desired model per file it needs.

    The entry's ``revision`` applies to files of its own repo only (the others are other
    repositories); ``required`` and ``subdir`` carry over to every file.
    """
    name, reason = choose_variant(profile, vram, entry.variant)
    variant = profile.variants[name]
    models = [
        DesiredModel(
            f"hf:{f.hf}/{f.path}",
            "hf",
            HFModel(
                hf=f.hf,
                files=[f.path],
                type=f.type,
                revision=entry.revision if f.hf == entry.hf else None,
                subdir=entry.subdir,
                required=entry.required,
            ),
            origin,
            f.type,
            filename=f.filename,
            sha256=f.sha256,
            size=f.size,
            variant=name,
        )
        for f in variant.files
    ]
    choice = VariantChoice(
        entry.hf, name, reason, origin, variant.vram_gib, variant.weights, variant.size,
        variant.workflow,
    )  # fmt: skip
    return choice, models


def needed_nodes(
    choices: Iterable[VariantChoice],
    profiles: Mapping[str, Profile],
    specs: Mapping[str, NodeSpec],
    present: Iterable[str],
) -> list[DesiredNode]:
    """Custom nodes the chosen variants need that the desired state does not list yet."""
    have = set(present)
    out: list[DesiredNode] = []
    for choice in choices:
        variant: Variant = profiles[choice.repo].variants[choice.variant]
        for key in variant.nodes:
            spec = specs[key]
            folder = spec.name or spec.url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
            if folder in have:
                continue
            have.add(folder)
            origin = f"{choice.origin} (variant {choice.variant})"
            out.append(DesiredNode(f"node:{folder}", folder, spec, origin))
    return out


def launch_weights(choices: Iterable[VariantChoice]) -> str | None:
    """What the launch flags should assume the diffusion weights are: ``fp8``/``gguf`` when
    any chosen variant stores them so (a forced ``--bf16-unet`` would upcast those), else
    ``bf16`` when a variant chose bf16, else None (no variant: the flags decide alone)."""
    kinds = {c.weights for c in choices}
    for kind in ("gguf", "fp8", "bf16"):
        if kind in kinds:
            return kind
    return None


class GpuVram(Protocol):
    """What variant selection needs of a GPU (``provisioner.runtime.gpu.GpuFacts`` has it)."""

    @property
    def name(self) -> str: ...

    @property
    def vram_bytes(self) -> int: ...


#: Reads GPU 0, or None when there is none; injected by the layers that may touch hardware.
GpuReader = Callable[[], "GpuVram | None"]


def detect_vram(env: Mapping[str, str], read_gpu: GpuReader | None) -> VramFact | None:
    """``PHOENIX_VRAM_GIB`` when set, else (``read_gpu`` given: apply and run) GPU 0's VRAM as
    ``read_gpu`` reports it, else None. The manifest layer never reads hardware itself."""
    override = vram_from_env(env)
    if override is not None or read_gpu is None:
        return override
    facts = read_gpu()
    return vram_from_gpu(facts.name, facts.vram_bytes) if facts is not None else None

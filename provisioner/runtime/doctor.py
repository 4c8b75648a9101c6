"""What ``phoenix doctor`` reports: GPU facts, the torch check, flags, storage, versions.

Read-only: nothing here writes, launches or downloads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from provisioner import __version__
from provisioner.core.errors import GPUError
from provisioner.core.layout import Layout
from provisioner.manifest.desired import VariantChoice
from provisioner.manifest.models import Manifest
from provisioner.manifest.variants import launch_weights
from provisioner.runtime import filebrowser, storage
from provisioner.runtime.cliargs import load_cli_spec
from provisioner.runtime.flags import InstalledFeatures
from provisioner.runtime.gpu import GpuFacts, check_arch, read_gpu_facts
from provisioner.runtime.launch import launch_args
from provisioner.runtime.probe import comfyui_version, git_head, probe_features


def doctor_report(
    manifest: Manifest,
    root: Path,
    env: Mapping[str, str],
    *,
    python: str,
    read_gpu: Callable[[], GpuFacts | None] = read_gpu_facts,
    probe: Callable[[str, bool], InstalledFeatures] = probe_features,
    variants: Sequence[VariantChoice] = (),
) -> dict[str, Any]:
    """Everything ``doctor`` shows, as data. Reads facts; changes nothing.

    ``variants`` are the profile variants chosen for this pod (``DesiredState.variants``): the
    flags follow their weights exactly as ``phoenix run`` does (:func:`launch_weights`).
    """
    gpu = read_gpu()
    features = probe(python, gpu is not None)
    arch: dict[str, Any] = {"checked": False, "ok": None, "message": "no GPU: nothing to check"}
    if gpu is not None:
        if features.torch_arch_list is None:
            arch = {"checked": False, "ok": None, "message": "torch not importable"}
        else:
            try:
                check_arch(gpu, features.torch_arch_list)
                arch = {"checked": True, "ok": True, "message": f"torch has code for {gpu.sm}"}
            except GPUError as exc:
                arch = {"checked": True, "ok": False, "message": exc.render()}
    checkout = Path(manifest.comfyui.path)
    layout = Layout(root)
    weights = launch_weights(variants)
    launch = launch_args(
        gpu, features, manifest.comfyui, layout, load_cli_spec(checkout),
        layout.phoenix / "run" / "extra_model_paths.yaml", weights,
    )  # fmt: skip
    report = storage.assess_storage(
        manifest.storage.mode,
        None,  # USE_VOLUME is already merged into storage.mode
        storage.read_mount_facts(root),
        storage.free_bytes(root),
        0,
        manifest.storage.min_free_gb,
        root_explicit=True,
    )
    fb = filebrowser.find_binary()
    return {
        "gpu": gpu.to_json() if gpu else None,
        "torch_arch_check": arch,
        "packages": {
            "torch": features.torch,
            "torch_cuda": features.torch_cuda,
            "torch_arch_list": list(features.torch_arch_list or []),
            "flash_attn": features.flash_attn,
            "sageattention": features.sageattention,
            "xformers": features.xformers,
        },
        "variants": [
            {"repo": v.repo, "variant": v.variant, "weights": v.weights, "reason": v.reason}
            for v in variants
        ],
        "flags": {
            "weights": weights,
            "args": list(launch.args),
            "reasons": [{"flag": r.flag, "reason": r.reason} for r in launch.choice.reasons],
            "dropped": list(launch.dropped),
            "warnings": list(launch.warnings),
        },
        "storage": report.to_json(),
        "versions": {
            "phoenix": __version__,
            "python": features.python,
            "comfyui_version": comfyui_version(checkout),
            "comfyui_commit": git_head(checkout),
            # null: no binary on PATH; "unknown": it is there but said no version
            "filebrowser": (filebrowser.binary_version(fb) or "unknown") if fb else None,
        },
    }


#: What the text report says for a value the probe could not find (JSON keeps ``null``).
_MISSING_PACKAGE = "not installed"
_MISSING_VERSION = {
    "python": "unknown (interpreter not found)",
    "comfyui_version": "unknown",
    "comfyui_commit": "unknown (not a git checkout)",
    "filebrowser": "not installed",
}


def _package_text(name: str, value: Any, packages: Mapping[str, Any]) -> str:
    if name == "torch_cuda" and not value and packages.get("torch"):
        return "none (CPU-only torch build)"
    if name == "torch_arch_list":
        return " ".join(value) if value else ("unknown" if packages.get("torch") else "-")
    return _MISSING_PACKAGE if value is None else str(value)


def render_doctor(report: dict[str, Any]) -> str:
    """The report as text for a person; a missing value is named, never printed as None."""
    gpu = report["gpu"]
    lines = ["GPU:"]
    if gpu:
        lines.append(
            f"  {gpu['name']}  cc {gpu['compute_capability']}  {gpu['vram_gib']} GiB  "
            f"driver {gpu['driver_version']}  CUDA driver {gpu['cuda_driver_version']}"
        )
    else:
        lines.append("  none visible (CPU mode)")
    arch = report["torch_arch_check"]
    mark = {True: "ok", False: "FAIL", None: "-"}[arch["ok"]]
    lines.append(f"torch/GPU check: {mark}: {arch['message']}")
    lines.append("packages:")
    packages = report["packages"]
    lines += [f"  {k:16} {_package_text(k, v, packages)}" for k, v in packages.items()]
    for v in report["variants"]:
        lines.append(f"variant: {v['repo']} {v['variant']} ({v['weights']}): {v['reason']}")
    lines.append("ComfyUI flags: " + " ".join(report["flags"]["args"]))
    lines += [f"  {r['flag'] or '(none)'}: {r['reason']}" for r in report["flags"]["reasons"]]
    lines += [f"  dropped: {d}" for d in report["flags"]["dropped"]]
    lines += [f"  warning: {w}" for w in report["flags"]["warnings"]]
    st = report["storage"]
    lines.append(
        f"storage: {st['mode']} at {st['root']} ({st['reason']}); {st['free_gb']} GB free, "
        f"{st['recommended_gb']} GB recommended"
    )
    lines += [f"  warning: {w}" for w in st["warnings"]]
    lines.append("versions:")
    lines += [
        f"  {k:16} {_MISSING_VERSION.get(k, 'unknown') if v is None else v}"
        for k, v in report["versions"].items()
    ]
    return "\n".join(lines)

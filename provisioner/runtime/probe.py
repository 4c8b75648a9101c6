"""Facts about what will be launched: packages in ComfyUI's interpreter, and the checkout.

The interpreter is asked in a subprocess (it may be another venv than Phoenix's). Package
versions come from distribution metadata without importing anything; torch is imported only
when a GPU is present, to read ``torch.cuda.get_arch_list()`` for the architecture check.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from provisioner import __version__
from provisioner.runtime.flags import InstalledFeatures
from provisioner.runtime.gpu import GpuFacts
from provisioner.runtime.system import service_env

log = logging.getLogger("phoenix.probe")

_SCRIPT = r"""
import importlib.metadata as md, importlib.util, json, sys
def version(*names):
    for name in names:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            pass
    return None
out = {
    "python": sys.version.split()[0],
    "flash_attn": importlib.util.find_spec("flash_attn") and version("flash_attn", "flash-attn"),
    "sageattention": version("sageattention"),
    "xformers": version("xformers"),
    "torch": version("torch"),
}
if sys.argv[1] == "1" and out["torch"]:
    try:
        import torch
        out["torch_cuda"] = torch.version.cuda
        out["torch_arch_list"] = torch.cuda.get_arch_list() if torch.cuda.is_available() else []
    except Exception as exc:
        out["torch_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def _same_interpreter(python: str) -> bool:
    try:
        return os.path.samefile(python, sys.executable)
    except OSError:
        return False


def _installed_here() -> InstalledFeatures:
    """Package versions of this very interpreter, from metadata (no subprocess, no import)."""

    def version(*names: str) -> str | None:
        for name in names:
            try:
                return md.version(name)
            except md.PackageNotFoundError:
                continue
        return None

    flash = version("flash_attn", "flash-attn") if importlib.util.find_spec("flash_attn") else None
    return InstalledFeatures(
        flash_attn=flash,
        sageattention=version("sageattention"),
        xformers=version("xformers"),
        torch=version("torch"),
        python=sys.version.split()[0],
    )


def probe_features(python: str, with_torch: bool, timeout: float = 180.0) -> InstalledFeatures:
    """Ask ``python`` which optional packages it has (and torch's CUDA archs if ``with_torch``).

    Without torch and for Phoenix's own interpreter this reads metadata in-process, which
    keeps ``phoenix run``'s start fast; importing torch always happens in a child process.
    """
    if not with_torch and _same_interpreter(python):
        return _installed_here()
    try:
        out = subprocess.run(
            [python, "-I", "-c", _SCRIPT, "1" if with_torch else "0"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=service_env(os.environ),
        )
        data = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        log.warning("cannot probe ComfyUI's interpreter %s: %s", python, exc)
        return InstalledFeatures()
    if data.get("torch_error"):
        log.warning("importing torch in %s failed: %s", python, data["torch_error"])
    archs = data.get("torch_arch_list")
    return InstalledFeatures(
        flash_attn=data.get("flash_attn") or None,
        sageattention=data.get("sageattention"),
        xformers=data.get("xformers"),
        torch=data.get("torch"),
        torch_cuda=data.get("torch_cuda"),
        torch_arch_list=tuple(archs) if archs is not None else None,
        python=data.get("python"),
    )


_VERSION = re.compile(r"""__version__\s*=\s*["']([^"']+)["']""")


def comfyui_version(checkout: Path) -> str | None:
    """``__version__`` from the checkout's ``comfyui_version.py`` (read, not imported)."""
    try:
        match = _VERSION.search((checkout / "comfyui_version.py").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return match.group(1) if match else None


def git_head(checkout: Path) -> str | None:
    """The commit the checkout's HEAD points at, read from ``.git`` without running git."""
    git = checkout / ".git"
    try:
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            git = (checkout / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(":", 1)[1].strip()
        loose = git / ref
        if loose.exists():
            return loose.read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None


def reported_versions(
    gpu: GpuFacts | None,
    features: InstalledFeatures,
    checkout: Path,
    fb_version: str | None,
) -> dict[str, Any]:
    """The versions the health API reports: Phoenix, ComfyUI, Python, torch, driver, GPU."""
    return {
        "phoenix": __version__,
        "comfyui_version": comfyui_version(checkout),
        "comfyui_commit": git_head(checkout),
        "python": features.python,
        "torch": features.torch,
        "driver": gpu.driver_version if gpu else None,
        "cuda_driver": gpu.cuda_driver_version if gpu else None,
        "gpu": gpu.name if gpu else None,
        "filebrowser": fb_version,
    }

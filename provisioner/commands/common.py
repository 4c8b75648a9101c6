"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.core.layout import Layout

if TYPE_CHECKING:
    from provisioner.core.config import Versions
    from provisioner.manifest.desired import DesiredState, Secrets


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """``--manifest`` and ``--root``, the inputs of every command that reads the desired state."""
    parser.add_argument(
        "--manifest",
        metavar="FILE",
        help="manifest YAML (default: $PHOENIX_MANIFEST, else the embedded FLUX.1-dev default)",
    )
    parser.add_argument(
        "--root", metavar="DIR", help="workspace root (default: $PHOENIX_ROOT, else /workspace)"
    )


def add_vram_option(parser: argparse.ArgumentParser) -> None:
    """``--vram-gib``: the VRAM that picks profile variants (sets PHOENIX_VRAM_GIB)."""
    parser.add_argument(
        "--vram-gib",
        metavar="N",
        help="GPU VRAM in GiB for choosing profile variants, e.g. 32 (default: "
        "$PHOENIX_VRAM_GIB, else the GPU's own at apply)",
    )


def load_inputs(
    args: argparse.Namespace, *, probe_gpu: bool = False
) -> tuple[DesiredState, Secrets, Layout, Versions]:
    """Desired state, secrets, workspace layout and pinned versions for a command."""
    from provisioner.core.config import load_versions
    from provisioner.manifest.merge import load_desired

    env = dict(os.environ)
    if getattr(args, "vram_gib", None) is not None:
        env["PHOENIX_VRAM_GIB"] = args.vram_gib  # checked like the variable (exit 1 if bad)
    from provisioner.runtime import gpu

    desired, secrets = load_desired(
        getattr(args, "manifest", None), env, read_gpu=gpu.read_gpu_facts if probe_gpu else None
    )
    root = getattr(args, "root", None) or desired.manifest.storage.root
    return desired, secrets, Layout(Path(root)), load_versions()

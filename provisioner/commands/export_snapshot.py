"""``phoenix export-snapshot``: the current ComfyUI, nodes and packages as a Manager snapshot."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from provisioner.commands.common import add_source_options
from provisioner.core.fsio import write_output
from provisioner.core.layout import DEFAULT_ROOT, Layout
from provisioner.software import pyenv
from provisioner.software.snapshot import dump_snapshot, export_snapshot
from provisioner.state.store import load_state

HELP = "write the current state as a ComfyUI-Manager snapshot (JSON or YAML)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--manifest``, ``--root``, ``--comfyui``, ``--output``, ``--format``."""
    add_source_options(parser)
    parser.add_argument(
        "--comfyui", metavar="DIR", help="ComfyUI checkout (default: the manifest's comfyui.path)"
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    parser.add_argument(
        "--format",
        choices=("json", "yaml"),
        help="snapshot format (default: from --output's extension, else json)",
    )


def _comfyui_path(manifest: str | None) -> Path:
    """``comfyui.path`` of the desired state (manifest + environment, as every command reads)."""
    from provisioner.manifest.merge import load_desired

    desired, _secrets = load_desired(manifest, os.environ)
    return Path(desired.manifest.comfyui.path)


def run(args: argparse.Namespace) -> int:
    """Export and print or write; notes on what could not be expressed go to stderr."""
    root = Path(args.root or os.environ.get("PHOENIX_ROOT") or DEFAULT_ROOT)
    layout = Layout(root)
    comfy = Path(args.comfyui) if args.comfyui else _comfyui_path(args.manifest)
    snap, notes = export_snapshot(layout, comfy, load_state(layout), pyenv.target_python(layout))
    fmt = args.format or (
        "yaml" if args.output and args.output.endswith((".yaml", ".yml")) else "json"
    )
    text = dump_snapshot(snap, fmt)
    if args.output:
        write_output(Path(args.output), text, "the snapshot")
    else:
        sys.stdout.write(text)
    for note in notes:
        print(f"phoenix: note: {note}", file=sys.stderr)
    return 0

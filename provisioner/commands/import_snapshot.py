"""``phoenix import-snapshot FILE``: a ComfyUI-Manager snapshot → manifest entries.

The ``comfyui`` commit becomes ``comfyui.ref`` (so ``apply`` checks it out, which the Manager
never does), git nodes become ``nodes:`` pinned to their hash, ``pips`` become ``packages:``.
Whatever cannot be imported (registry nodes offline, disabled nodes, local wheels, the image's
torch stack) is reported on stderr and as comments in the output; nothing is dropped silently.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from provisioner.errors import ManifestError
from provisioner.fsio import write_output
from provisioner.manifest.models import Manifest
from provisioner.snapshot import PIP_MODES, import_snapshot, parse_snapshot, render_manifest

HELP = "turn a ComfyUI-Manager snapshot (JSON or YAML) into manifest entries"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """FILE, ``--output``, ``--pips``."""
    parser.add_argument("file", metavar="FILE", help="snapshot file (.json or .yaml)")
    parser.add_argument(
        "--output", "-o", metavar="FILE", help="write the manifest YAML here (default: stdout)"
    )
    parser.add_argument(
        "--pips",
        choices=PIP_MODES,
        default="pinned",
        help="which pip entries to import: none, pinned (name==version; default), "
        "all (also name @ URL)",
    )


def run(args: argparse.Namespace) -> int:
    """Import, validate the result as a manifest, print or write it; reports go to stderr."""
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read snapshot: {exc.strerror}", where=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"cannot read snapshot: not UTF-8 text (byte {exc.start})",
            where=str(path),
            hint="pass the .json or .yaml file ComfyUI-Manager saved",
        ) from exc
    imported = import_snapshot(parse_snapshot(text, str(path)), pips=args.pips)
    Manifest.model_validate(imported.manifest())  # what we emit must load as a manifest
    rendered = render_manifest(imported, path.name)
    if args.output:
        write_output(Path(args.output), rendered, "the manifest")
    else:
        sys.stdout.write(rendered)
    for line in imported.reports:
        print(f"phoenix: not imported: {line}", file=sys.stderr)
    comfy = f"@ {imported.comfyui_ref[:12]}" if imported.comfyui_ref else "(none)"
    print(
        f"phoenix: imported comfyui {comfy}, {len(imported.nodes)} node(s), "
        f"{len(imported.packages)} package(s); {len(imported.reports)} item(s) not imported",
        file=sys.stderr,
    )
    return 0

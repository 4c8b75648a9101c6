"""Options shared by several subcommands."""

from __future__ import annotations

import argparse


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

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


def load_inputs(args: argparse.Namespace) -> tuple[DesiredState, Secrets, Layout, Versions]:
    """Desired state, secrets, workspace layout and pinned versions for a command."""
    from provisioner.core.config import load_versions
    from provisioner.manifest.merge import load_desired

    desired, secrets = load_desired(getattr(args, "manifest", None), os.environ)
    root = getattr(args, "root", None) or desired.manifest.storage.root
    return desired, secrets, Layout(Path(root)), load_versions()

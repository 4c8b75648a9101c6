"""``phoenix validate``: check the manifest and env vars; print what they add up to."""

from __future__ import annotations

import argparse
import os
import sys

from provisioner.commands.common import add_source_options

HELP = "validate the manifest and environment variables"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_options(parser)


def run(args: argparse.Namespace) -> int:
    from provisioner.manifest.merge import load_desired

    desired, _ = load_desired(args.manifest, os.environ)
    source = desired.manifest_path or "embedded default + environment"
    print(
        f"OK: {source} is valid: {len(desired.models)} model item(s), {len(desired.nodes)} "
        f"node(s), {len(desired.packages)} package(s)"
    )
    for warning in desired.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0

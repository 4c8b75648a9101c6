"""``phoenix plan``: the diff between the desired state and the workspace. Offline, read-only."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.commands.common import add_source_options, add_vram_option, load_inputs
from provisioner.core.layout import Layout
from provisioner.software import pyenv

if TYPE_CHECKING:
    from provisioner.manifest.desired import DesiredState

DEFAULT_COMFYUI = "/opt/ComfyUI"
HELP = "show what apply would change (read-only; exit 2 with --detailed-exitcode on changes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_options(parser)
    add_vram_option(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when nothing changes, 2 when changes are pending, 1 on errors",
    )
    parser.add_argument("--verify", action="store_true", help="re-hash placed files (slow)")
    parser.add_argument("--prune", action="store_true", help="count removals as changes")


def _with_lock(desired: DesiredState) -> tuple[DesiredState, list[str]]:
    """Pins from the lock file beside the manifest (sizes, hashes, commits), and how the
    desired state differs from it; unchanged when there is no lock file."""
    from provisioner.state.lockfile import apply_lock, load_lock, lock_drift, lock_path_for

    path = lock_path_for(desired.manifest_path)
    if not path.is_file():
        return desired, []
    lock = load_lock(path)
    drift = [f"lock {path.name}: {message}" for message in lock_drift(desired, lock)]
    return apply_lock(desired, lock), drift


def run(args: argparse.Namespace) -> int:
    # The installed-distributions child runs while the manifest machinery imports and parses.
    # It is keyed by interpreter, so a wrong guess only costs the child (or the overlap).
    layout = Layout(Path(_likely_root(args)))
    if _likely_reads_packages(args, layout):
        with pyenv.prefetch_distributions(pyenv.target_python(layout)):
            return _run(args)
    return _run(args)


def _likely_root(args: argparse.Namespace) -> str:
    return str(args.root or os.environ.get("PHOENIX_ROOT", "").strip() or "/workspace")


def _likely_reads_packages(args: argparse.Namespace, layout: Layout) -> bool:
    """Whether observing will probably read the installed distributions (a guess, no parse).

    True after an apply made the venv, when the image's ComfyUI has requirements, or when a
    manifest or EXTRA_PYTHON_PACKAGES may ask for packages; the embedded default asks for none.
    """
    return bool(
        args.manifest
        or os.environ.get("PHOENIX_MANIFEST", "").strip()
        or os.environ.get("EXTRA_PYTHON_PACKAGES", "").strip()
        or pyenv.venv_python(layout).exists()
        or Path(DEFAULT_COMFYUI, "requirements.txt").is_file()
    )


def _run(args: argparse.Namespace) -> int:
    from provisioner.plan.build import build_plan
    from provisioner.plan.render import render_json, render_text, use_color

    desired, _, layout, versions = load_inputs(args)
    desired, drift = _with_lock(desired)
    plan = build_plan(desired, layout, versions, verify=args.verify)
    if drift:
        plan = replace(plan, warnings=(*plan.warnings, *drift))
    if args.format == "json":
        print(render_json(plan, args.prune))
    else:
        print(render_text(plan, color=use_color(sys.stdout), prune=args.prune))
    return 2 if args.detailed_exitcode and plan.has_changes(args.prune) else 0

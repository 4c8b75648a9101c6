"""``phoenix plan``: the diff between the desired state and the workspace. Offline, read-only."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from provisioner.commands.common import add_source_options, load_inputs

if TYPE_CHECKING:
    from provisioner.manifest.desired import DesiredState

HELP = "show what apply would change (read-only; exit 2 with --detailed-exitcode on changes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_options(parser)
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
    from provisioner.lockfile import apply_lock, load_lock, lock_drift, lock_path_for

    path = lock_path_for(desired.manifest_path)
    if not path.is_file():
        return desired, []
    lock = load_lock(path)
    drift = [f"lock {path.name}: {message}" for message in lock_drift(desired, lock)]
    return apply_lock(desired, lock), drift


def run(args: argparse.Namespace) -> int:
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

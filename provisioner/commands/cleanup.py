"""``phoenix cleanup``: remove secret-bearing remnants (and, paranoid, user data) now."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from provisioner.layout import DEFAULT_ROOT, Layout
from provisioner.manifest.envmap import flag_or_none
from provisioner.runtime import cleanup, storage, system

HELP = "remove staging files, caches, token files and histories; PARANOID_MODE wipes user data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``phoenix cleanup``."""
    parser.add_argument(
        "--root", metavar="DIR", help="workspace root (default: $PHOENIX_ROOT, else /workspace)"
    )
    parser.add_argument(
        "--paranoid",
        action=argparse.BooleanOptionalAction,
        default=bool(flag_or_none(os.environ.get("PARANOID_MODE"))),
        help="also overwrite and remove outputs, inputs, user data and logs (default: "
        "$PARANOID_MODE)",
    )
    parser.add_argument(
        "--mode",
        choices=["auto", "ephemeral", "volume"],
        default="auto",
        help="storage mode; auto: a mounted root is a volume ($USE_VOLUME=true forces volume)",
    )
    parser.add_argument(
        "--include-volume-data",
        action="store_true",
        help="with --paranoid on a volume, also wipe outputs/inputs/user data (never models)",
    )
    parser.add_argument(
        "--deadline", type=float, default=30.0, metavar="SECONDS", help="stop after this long"
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed")


def run(args: argparse.Namespace) -> int:
    """Clean up and print the summary; 0 when done, 1 when it hit errors or the deadline."""
    root = Path(args.root or os.environ.get("PHOENIX_ROOT") or DEFAULT_ROOT)
    report = storage.assess_storage(
        args.mode,
        flag_or_none(os.environ.get("USE_VOLUME")),
        storage.read_mount_facts(root),
        storage.free_bytes(root),
        0,
        0,
        root_explicit=True,
    )
    layout = Layout(root)
    targets = cleanup.cleanup_targets(
        layout,
        report.mode,
        args.paranoid,
        system.default_homes(),
        include_volume_data=args.include_volume_data,
        hf_home=os.environ.get("HF_HOME"),
    )
    print(f"cleanup: {report.mode} storage at {root} ({report.reason}); paranoid={args.paranoid}")
    if args.dry_run:
        for target in targets:
            how = "overwrite+remove" if target.shred else "remove"
            scope = " (contents)" if target.contents_only else ""
            print(f"  {how:16} {target.path}{scope}  [{target.why}]")
        return 0
    system.scrub_secret_env(dict(os.environ))  # registers the tokens this shell still holds
    scrubbed = cleanup.scrub_secret_remnants(cleanup.log_files(layout))
    summary = cleanup.run_cleanup(
        targets, time.monotonic() + args.deadline, protected=[layout.models]
    )
    print(summary.line() + (f"; masked secrets in {scrubbed} log(s)" if scrubbed else ""))
    for error in summary.errors:
        print(f"  error: {error}", file=sys.stderr)
    return 1 if summary.errors or summary.timed_out else 0

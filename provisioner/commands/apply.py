"""``phoenix apply``: make the workspace match the plan — download, verify, place, record."""

from __future__ import annotations

import argparse
import os
import sys

from provisioner.commands.argtypes import count
from provisioner.commands.common import add_source_options, add_vram_option, load_inputs
from provisioner.commands.logs import setup_logging
from provisioner.core.redact import redact

HELP = "apply the plan: fetch and verify models, install nodes and packages (exit 1 on failures)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_options(parser)
    add_vram_option(parser)
    parser.add_argument(
        "--jobs", type=count, default=4, metavar="N", help="parallel downloads (default 4)"
    )
    parser.add_argument(
        "--verify", action="store_true", help="re-hash placed files instead of trusting size+mtime"
    )
    parser.add_argument(
        "--prune", action="store_true", help="remove what Phoenix placed that is no longer desired"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="re-fetch models that look present; discard local edits in node and ComfyUI "
        "checkouts (to update them, or to remove them with --prune)",
    )
    parser.add_argument(
        "--locked",
        action="store_true",
        help="use only the lock file (no resolution); fail if the manifest changed since",
    )


def run(args: argparse.Namespace) -> int:
    from provisioner.apply import apply_all
    from provisioner.state.lockfile import load_lock, lock_path_for

    desired, secrets, layout, versions = load_inputs(args, probe_gpu=True)
    log = setup_logging(desired.manifest.debug)
    locked = None
    if args.locked:
        manifest = getattr(args, "manifest", None) or os.environ.get("PHOENIX_MANIFEST")
        locked = load_lock(lock_path_for(manifest))
    report = apply_all(
        desired, layout, versions, secrets, jobs=args.jobs, verify=args.verify,
        prune=args.prune, force=args.force, locked=locked, log=log.getChild("apply"),
    )
    for r in report.results:
        mark = "ok  " if r.ok else "FAIL"
        origin = f" [{report.origins[r.id]}]" if not r.ok and r.id in report.origins else ""
        print(redact(f"{mark} {r.kind:<8} {r.id}{origin}: {r.message}"))
    failed = report.failed
    ok_ids = {r.id for r in report.results if r.ok}
    stuck = [c for c in report.remaining if c.id in ok_ids]
    print(
        f"apply: {len(report.results) - len(failed)} done, {len(failed)} failed, "
        f"{len(report.remaining)} change(s) still pending"
    )
    for change in stuck:
        print(redact(f"phoenix: still pending after success: {change.id}: {change.reason}"),
              file=sys.stderr)  # fmt: skip
    return 1 if failed or stuck else 0

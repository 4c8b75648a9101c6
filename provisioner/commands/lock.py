"""``phoenix lock``: resolve every floating reference and write the lock file."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from provisioner.commands.argtypes import count
from provisioner.commands.common import add_source_options, load_inputs
from provisioner.core.redact import redact

HELP = "resolve HF revisions, Civitai versions and node refs; write <manifest>.lock.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_options(parser)
    parser.add_argument(
        "--output", metavar="FILE", help="where to write (default: beside the manifest)"
    )
    parser.add_argument("--jobs", type=count, default=4, metavar="N", help="parallel lookups")


def run(args: argparse.Namespace) -> int:
    from provisioner.sources.resolve import resolve_lock
    from provisioner.state.lockfile import lock_path_for, write_lock

    desired, secrets, _, _ = load_inputs(args)
    manifest = getattr(args, "manifest", None) or os.environ.get("PHOENIX_MANIFEST")
    path = Path(args.output) if args.output else lock_path_for(manifest)
    lock, errors = resolve_lock(desired, secrets, jobs=max(1, args.jobs))
    for item_id, exc in errors:
        print(redact(f"phoenix: error: {item_id}: {exc.render()}"), file=sys.stderr)
    if errors:
        print(f"lock: {len(errors)} item(s) could not be resolved; {path} was not written",
              file=sys.stderr)  # fmt: skip
        return 1
    write_lock(lock, path)
    print(f"lock: {len(lock.models)} model(s), {len(lock.nodes)} node(s) pinned → {path}")
    return 0

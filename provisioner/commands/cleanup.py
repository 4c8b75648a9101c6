"""``phoenix cleanup``: remove secret-bearing remnants (and, paranoid, user data) now.

Home-level targets (pip/uv caches, the Hugging Face token file, shell histories: everything
outside the workspace root) are only cleaned inside the Phoenix image (``PHOENIX_IN_IMAGE``)
or with ``--include-home``, so running it on a workstation never touches the user's home.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from provisioner.commands.argtypes import seconds
from provisioner.core.errors import EnvError, PhoenixError
from provisioner.core.layout import DEFAULT_ROOT, Layout
from provisioner.manifest.envmap import parse_bool
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
        default=None,
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
        "--include-home",
        action="store_true",
        help="also clean $HOME's pip/uv caches, Hugging Face token file and shell histories "
        "(the default only inside the Phoenix image)",
    )
    parser.add_argument(
        "--deadline",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="stop after this long (default 30)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed")


def env_flag(name: str, environ: Mapping[str, str]) -> bool | None:
    """``name`` parsed strictly as a boolean; unset or empty → None, invalid → EnvError."""
    raw = environ.get(name, "")
    if not raw.strip():
        return None
    try:
        return parse_bool(raw)
    except ValueError as exc:
        raise EnvError(
            f"invalid value {raw!r}: {exc}", where=f"env:{name}", hint="fix or unset it"
        ) from None


def run(args: argparse.Namespace) -> int:
    """Clean up and print the summary; 0 when done, 1 when it hit errors or the deadline."""
    root = Path(args.root or os.environ.get("PHOENIX_ROOT") or DEFAULT_ROOT)
    if not root.is_dir():
        raise PhoenixError(
            f"workspace root {root} is not an existing directory",
            where="phoenix cleanup --root",
            hint="pass the workspace root Phoenix provisioned (--root or $PHOENIX_ROOT)",
        )
    use_volume = env_flag("USE_VOLUME", os.environ)
    env_paranoid = env_flag("PARANOID_MODE", os.environ)
    paranoid = args.paranoid if args.paranoid is not None else bool(env_paranoid)
    include_home = args.include_home or cleanup.in_phoenix_image(os.environ)
    report = storage.assess_storage(
        args.mode,
        use_volume,
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
        paranoid,
        _homes(include_home),
        include_volume_data=args.include_volume_data,
        hf_home=os.environ.get("HF_HOME") if include_home else None,
    )
    print(
        f"cleanup: {report.mode} storage at {root} ({report.reason}); paranoid={paranoid}; "
        + ("home-level files included" if include_home else "workspace only (--include-home "
           "also cleans $HOME's caches, token file and histories)")
    )
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
    for line in cleanup.error_lines(summary.errors):
        print(line, file=sys.stderr)
    return 1 if summary.errors or summary.timed_out else 0


def _homes(include_home: bool) -> list[Path]:
    """``$HOME`` when home-level files are included and it is absolute; else none, said why."""
    if not include_home:
        return []
    homes, why_not = cleanup.home_from_env(os.environ)
    if why_not:
        print(
            f"warning: env:HOME: {why_not}\n  hint: set HOME to the absolute home folder to "
            "clean (e.g. HOME=/root) and run again",
            file=sys.stderr,
        )
    return homes



"""``phoenix run``: the container's main process."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from provisioner.commands.argtypes import count, port, seconds
from provisioner.commands.common import add_source_options
from provisioner.core.errors import EnvError

HELP = "harden, apply, launch ComfyUI and services, wait for a signal, stop and clean up"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``phoenix run``."""
    add_source_options(parser)
    parser.add_argument(
        "--skip-apply", action="store_true", help="launch with what is on disk; change nothing"
    )
    parser.add_argument(
        "--locked",
        action="store_true",
        help="apply exactly what <manifest>.lock.json pins, as apply --locked does (a baked "
        "image: nothing is resolved, so nothing is fetched); a stale lock is an error",
    )
    parser.add_argument("--jobs", type=count, default=4, help="parallel downloads (default 4)")
    parser.add_argument(
        "--health-port", type=port, help="health API port (default: services.health.port, 8189)"
    )
    parser.add_argument(
        "--grace",
        type=seconds,
        metavar="SECONDS",
        help="seconds the container gets to stop (docker's default 10; $PHOENIX_STOP_GRACE); "
        "stopping services and cleanup fit inside it",
    )


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT or a failure; see :mod:`provisioner.runtime.run` for exit codes."""
    # imported here so that other subcommands do not pay for the runtime's imports
    from provisioner.commands.logs import debug_enabled, setup_logging
    from provisioner.runtime.run import run_pod
    from provisioner.runtime.run_inputs import RunOptions

    setup_logging(debug=debug_enabled(os.environ))
    grace = args.grace if args.grace is not None else _grace_from_env()
    root = args.root or os.environ.get("PHOENIX_ROOT")
    options = RunOptions(
        root=Path(root) if root else None,
        manifest=args.manifest or os.environ.get("PHOENIX_MANIFEST"),
        health_port=args.health_port,
        skip_apply=args.skip_apply,
        locked=args.locked,
        jobs=args.jobs,
        grace_s=grace,
        stop_timeout_s=max(1.0, min(5.0, grace / 2)),
    )
    return run_pod(options)


def _grace_from_env() -> float:
    text = os.environ.get("PHOENIX_STOP_GRACE", "").strip() or "10"
    try:
        return seconds(text)
    except argparse.ArgumentTypeError as exc:
        raise EnvError(
            str(exc),
            where="env:PHOENIX_STOP_GRACE",
            hint="set it to the container's stop grace period, e.g. 10 (docker's default)",
        ) from exc

"""``phoenix stop``: SIGTERM to the ``phoenix run`` of a workspace root, found by its pid file.

``phoenix run`` then stops every service and cleans up within its grace period, as on
``docker stop``. A pid file whose process is gone, or is no longer ``phoenix run`` (a pid the
kernel reused), is refused rather than signalled.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from provisioner.core.errors import StateError
from provisioner.core.layout import Layout

HELP = "send SIGTERM to this root's phoenix run (.phoenix/run/phoenix.pid): services stop, cleanup"
HINT = "is phoenix run running for this root? pass --root (or PHOENIX_ROOT) to name another"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``phoenix stop``."""
    parser.add_argument(
        "--root", help="workspace root (default: $PHOENIX_ROOT, else /workspace)"
    )


def run_pid(pid_file: Path) -> int:
    """The pid ``pid_file`` names, when that process is alive and is ``phoenix run``."""
    try:
        text = pid_file.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise StateError("no pid file", where=str(pid_file), hint=HINT) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"cannot read the pid file: {exc}", where=str(pid_file)) from exc
    if not text.isdigit() or int(text) <= 1:
        raise StateError(
            f"not a pid: {text[:20]!r}", where=str(pid_file), hint="remove the file; " + HINT
        )
    pid = int(text)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        argv = []
    words = {Path(a.decode(errors="replace")).name for a in argv if a}
    if not ({"phoenix", "provisioner"} & words and "run" in words):
        gone = "is gone" if not argv else "is not phoenix run (the pid was reused)"
        raise StateError(
            f"pid {pid} {gone}: a stale pid file", where=str(pid_file), hint="remove it; " + HINT
        )
    return pid


def run(args: argparse.Namespace) -> int:
    """Signal the running ``phoenix run``; 1 with a message when there is none."""
    root = Path(args.root or os.environ.get("PHOENIX_ROOT") or "/workspace")
    pid = run_pid(Layout(root).run_pid)
    os.kill(pid, signal.SIGTERM)
    print(f"stop: sent SIGTERM to phoenix run (pid {pid}) for {root}")
    return 0

"""The ``phoenix`` command line: parse, dispatch to ``provisioner.commands.<name>``, map errors.

No logic lives here. Exit codes: 0 ok, 1 user error, 2 plan has changes (``--detailed-exitcode``),
3 internal bug, 130 interrupted. A user error never prints a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from provisioner import __version__
from provisioner.commands.logs import debug_enabled
from provisioner.core.errors import PhoenixError
from provisioner.core.redact import redact

#: Subcommands in help order; each is a module in ``provisioner.commands`` exposing
#: ``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int``.
COMMANDS = (
    "validate",
    "plan",
    "apply",
    "lock",
    "run",
    "cleanup",
    "status",
    "stop",
    "doctor",
    "import-snapshot",
    "export-snapshot",
    "schema",
    "env",
    "template",
)

EXIT_OK, EXIT_USER, EXIT_CHANGES, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which CI would read as "plan has changes"."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USER, f"{self.prog}: error: {message}\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser. With ``only``, just that subcommand is registered and its module imported
    (fast start-up); argparse needs no other to dispatch it, and the top-level usage names
    ``COMMAND``, not the list.
    """
    parser = _Parser(
        prog="phoenix",
        description="Provision ComfyUI + FLUX on a GPU pod from env vars and a manifest.",
    )
    parser.add_argument("--version", action="version", version=f"phoenix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        if only is not None and name != only:
            continue
        module = importlib.import_module(f"provisioner.commands.{name.replace('-', '_')}")
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` when it is unambiguous, else None (full parser)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    if first in COMMANDS and not any(a in {"-h", "--help"} for a in argv[: argv.index(first)]):
        return first
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_chosen_command(arguments))
    args = parser.parse_args(arguments)
    try:
        return int(args._module.run(args))
    except PhoenixError as exc:
        print(f"phoenix: error: {redact(exc.render())}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`phoenix plan | head`): stop quietly; the output is incomplete,
        # so this is not a success.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_USER
    except KeyboardInterrupt:
        print("phoenix: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # the system refused a path or a port the user gave: theirs to fix
        if debug_enabled(os.environ):  # ...or a bug that raised OSError: DEBUG_MODE shows where
            print(redact(traceback.format_exc()), file=sys.stderr)
        where = exc.filename or "phoenix"
        print(
            f"phoenix: error: {redact(f'{where}: {exc.strerror or exc}')}\n"
            "  hint: check that path (or port): it must exist where a folder is expected, be "
            "writable, and not be in use",
            file=sys.stderr,
        )
        return EXIT_USER
    except Exception as exc:  # a bug: say so plainly, keep the traceback for DEBUG_MODE
        if debug_enabled(os.environ):
            print(redact(traceback.format_exc()), file=sys.stderr)
        print(
            f"phoenix: internal error: {redact(f'{type(exc).__name__}: {exc}')}\n"
            "  this is a bug in Phoenix; rerun with DEBUG_MODE=true for details and report it",
            file=sys.stderr,
        )
        return EXIT_BUG

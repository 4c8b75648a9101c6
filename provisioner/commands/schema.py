"""``phoenix schema``: print (or write) the manifest or plan JSON Schema."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "print the manifest (or plan) JSON Schema"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=("manifest", "plan"), default="manifest")
    parser.add_argument(
        "--write", metavar="DIR", help="write <kind>.schema.json into DIR instead of printing"
    )


def run(args: argparse.Namespace) -> int:
    from provisioner.core.fsio import write_output
    from provisioner.generate.schema import schema_text

    text = schema_text(args.kind)
    if args.write:
        target = Path(args.write) / f"{args.kind}.schema.json"
        write_output(target, text, "the schema")
        print(f"wrote {target}")
    else:
        print(text, end="")
    return 0

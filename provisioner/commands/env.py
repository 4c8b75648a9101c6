"""``phoenix env``: the environment variables Phoenix reads (generated from the table)."""

from __future__ import annotations

import argparse
import json

HELP = "list the environment variables Phoenix reads"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    parser.add_argument("--tier", choices=("Basic", "Advanced"), help="only this tier")


def run(args: argparse.Namespace) -> int:
    from provisioner.generate.docs import env_markdown_table, env_rows

    if args.format == "markdown":
        print(env_markdown_table(args.tier), end="")
    elif args.format == "json":
        print(json.dumps(env_rows(args.tier), indent=2))
    else:
        for row in env_rows(args.tier):
            secret = " (secret)" if row["secret"] else ""
            print(f"{row['name']}{secret}  [{row['tier']}]  default: {row['default']}")
            print(f"    {row['help']}")
    return 0

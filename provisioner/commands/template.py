"""``phoenix template``: print, write or check the RunPod template (runpod/template.json)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "print the RunPod template generated from the env var table and versions.conf"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image", metavar="IMAGE", help="image reference for imageName (default: phoenix:VERSION)"
    )
    parser.add_argument(
        "--api",
        action="store_true",
        help="RunPod saveTemplate input only: env entries as key/value, no descriptions",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", metavar="FILE", help="write the JSON to FILE instead of printing")
    mode.add_argument(
        "--check",
        metavar="FILE",
        help="exit 1 when FILE differs from the generated template (for CI)",
    )


def template_text(image: str | None, api: bool) -> str:
    """The template JSON text, newline-terminated, as committed."""
    import json

    from provisioner.core.config import load_versions
    from provisioner.generate.template import api_input, render_template
    from provisioner.manifest.envmap import ENV_VARS

    template = render_template(ENV_VARS, load_versions(), image=image)
    if api:
        template = api_input(template)
    return json.dumps(template, indent=2, ensure_ascii=False) + "\n"


def run(args: argparse.Namespace) -> int:
    from provisioner.core.errors import ConfigError
    from provisioner.core.fsio import read_text_file, write_output

    text = template_text(args.image, args.api)
    if args.write:
        target = Path(args.write)
        write_output(target, text, "the template")
        print(f"wrote {target}")
    elif args.check:
        target = Path(args.check)
        current = read_text_file(
            target, "the template", ConfigError, f"regenerate it: phoenix template --write {target}"
        )
        if current != text:
            raise ConfigError(
                "the template is out of date with the env var table or versions.conf",
                where=str(target),
                hint=f"regenerate it: phoenix template --write {target}",
            )
        print(f"{target} is up to date")
    else:
        print(text, end="")
    return 0

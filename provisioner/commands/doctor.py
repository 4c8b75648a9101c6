"""``phoenix doctor``: GPU facts, torch check, chosen flags, storage and versions, read-only."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from provisioner.commands.common import add_source_options

HELP = "print GPU facts, the torch/GPU check, chosen ComfyUI flags, storage and versions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``phoenix doctor``."""
    add_source_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    """Print the doctor report; 1 when the torch/GPU check fails."""
    from provisioner.core.layout import Layout
    from provisioner.core.redact import redact
    from provisioner.runtime.doctor import doctor_report, render_doctor
    from provisioner.runtime.run_inputs import default_comfy_python, default_load

    env = dict(os.environ)
    desired, _secrets = default_load(args.manifest or env.get("PHOENIX_MANIFEST"), env)
    manifest = desired.manifest
    root = Path(args.root or env.get("PHOENIX_ROOT") or manifest.storage.root)
    report = doctor_report(
        manifest, root, env,
        python=default_comfy_python(Layout(root)), variants=desired.variants,
    )  # fmt: skip
    text = json.dumps(report, indent=2, sort_keys=True) if args.json else render_doctor(report)
    print(redact(text))
    return 1 if report["torch_arch_check"]["ok"] is False else 0

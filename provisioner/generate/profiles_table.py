"""The README's table of profile variants, generated from manifests/profiles.yaml.

Regenerate with ``python -m provisioner.generate.profiles_table --write README.md``;
tests/generate/test_docs.py fails when the committed table drifts from the profiles file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from provisioner.manifest.profiles import Profiles, load_profile_file

BEGIN = "<!-- BEGIN GENERATED: profiles (python -m provisioner.generate.profiles_table) -->"
END = "<!-- END GENERATED: profiles -->"


def profiles_markdown_table(profiles: Profiles) -> str:
    """One row per variant, best first as ``variant: auto`` tries them."""
    lines = [
        "| Model | Variant | Weights | Files (ComfyUI folder) | GB on disk | Offered from VRAM |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for repo, profile in profiles.profiles.items():
        for name, variant in profile.variants.items():
            files = "<br>".join(f"`{f.filename}` ({f.type})" for f in variant.files)
            exact = all(f.size_exact for f in variant.files)
            size = f"{'' if exact else '≈ '}{variant.size / 1e9:.1f}"
            # gated only when the variant downloads from the gated repo itself
            gated = profile.gated and any(f.hf == repo for f in variant.files)
            mark = " (gated)" if gated else ""
            cells = [f"`{repo}`", f"`{name}`{mark}", variant.weights, files, size]
            lines.append("| " + " | ".join(cells) + f" | {variant.vram_gib:g} GiB |")
    return "\n".join(lines) + "\n"


def variant_summary(profiles: Profiles) -> list[str]:
    """One line per profiled model: each variant's disk size and the VRAM it is offered from,
    best first (what the RunPod template's readme says of models beyond the default)."""
    lines = []
    for repo, profile in profiles.profiles.items():
        if not profile.variants:
            continue  # a plain file list: the README's profile table has its files
        parts = []
        for name, variant in profile.variants.items():
            exact = all(f.size_exact for f in variant.files)
            size = f"{'' if exact else '≈ '}{variant.size / 1e9:.0f} GB"
            parts.append(f"{name} {size} from {variant.vram_gib:g} GiB")
        lines.append(f"`{repo}`: " + ", ".join(parts))
    return lines


def readme_block(profiles: Profiles | None = None) -> str:
    """The generated README block, between its markers."""
    return f"{BEGIN}\n{profiles_markdown_table(profiles or load_profile_file())}{END}"


def replace_block(readme: str, block: str) -> str:
    """``readme`` with its generated profiles block replaced by ``block``."""
    start, stop = readme.index(BEGIN), readme.index(END) + len(END)
    return readme[:start] + block + readme[stop:]


def main(argv: list[str]) -> int:
    """Print the block, or with ``--write README.md`` replace it in that file."""
    if argv[:1] == ["--write"] and len(argv) == 2:
        from provisioner.core.fsio import atomic_write_text

        path = Path(argv[1])
        text = replace_block(path.read_text(encoding="utf-8"), readme_block())
        atomic_write_text(path, text, 0o644)
        return 0
    print(readme_block())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

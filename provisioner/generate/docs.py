"""Text generated from the env var table: README tables and ``phoenix env``."""

from __future__ import annotations

from typing import Any

from provisioner.manifest.envmap import ENV_VARS

README_BEGIN = "<!-- BEGIN GENERATED: env-{tier} (phoenix env --format markdown --tier {tier}) -->"
README_END = "<!-- END GENERATED: env-{tier} -->"


def env_rows(tier: str | None = None) -> list[dict[str, Any]]:
    """One dict per variable (optionally one tier), in table order."""
    return [
        {
            "name": v.name,
            "tier": v.tier,
            "secret": v.secret,
            "default": v.default if v.default is not None else "-",
            "manifest_path": v.manifest_path,
            "help": v.help,
        }
        for v in ENV_VARS
        if tier is None or v.tier == tier
    ]


def env_markdown_table(tier: str | None = None) -> str:
    """A Markdown table of the variables."""
    lines = ["| Variable | Default | Manifest key | Description |", "| --- | --- | --- | --- |"]
    for row in env_rows(tier):
        name = f"`{row['name']}`" + (" 🔒" if row["secret"] else "")
        default = f"`{row['default']}`" if row["default"] != "-" else "-"
        key = f"`{row['manifest_path']}`" if row["manifest_path"] else "-"
        text = str(row["help"]).replace("|", "\\|")  # a bare | would end the table cell
        lines.append(f"| {name} | {default} | {key} | {text} |")
    return "\n".join(lines) + "\n"


def readme_block(tier: str) -> str:
    """The generated README block for one tier, between its markers."""
    begin = README_BEGIN.format(tier=tier)
    end = README_END.format(tier=tier)
    return f"{begin}\n{env_markdown_table(tier)}{end}"

"""What the benchmarks share: print a results table, and append it to a Markdown file if asked."""

from __future__ import annotations

from pathlib import Path


def emit(lines: list[str], markdown: Path | None) -> None:
    """Print ``lines``; with ``markdown``, also append them there as one block."""
    text = "\n".join(lines)
    print(text)
    if markdown:
        with open(markdown, "a", encoding="utf-8") as fh:
            fh.write(text + "\n\n")

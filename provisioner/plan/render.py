"""Render a plan as text (one line per item, ``+ ~ - =``) or JSON (``schemas/plan.schema.json``)."""

from __future__ import annotations

import json
import os
from typing import Any

from provisioner.core.redact import redact
from provisioner.core.units import human_bytes
from provisioner.plan.build import Plan
from provisioner.plan.change import MARKS

_COLORS = {"create": "32", "update": "33", "delete": "31", "unchanged": "2"}


def render_json(plan: Plan, prune: bool = False) -> str:
    """JSON text of the plan (secrets redacted, as everywhere)."""
    from provisioner.plan.document import plan_document

    doc = plan_document(plan, prune).model_dump(mode="json")
    return redact(json.dumps(doc, indent=2))


def use_color(stream: Any) -> bool:
    """Color only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org)."""
    return "NO_COLOR" not in os.environ and bool(getattr(stream, "isatty", lambda: False)())


def human_size(size: int | None) -> str:
    """``12.3 GB`` style (:func:`~provisioner.core.units.human_bytes`), or ``size unknown``."""
    return "size unknown" if size is None else human_bytes(size)


def pinned_summary(versions: dict[str, str]) -> str:
    """One line of what versions.conf pins: ComfyUI, NGC PyTorch, FileBrowser."""
    parts = []
    if "COMFYUI_COMMIT" in versions:
        version = versions.get("COMFYUI_VERSION", "")
        parts.append(f"ComfyUI {version} @ {versions['COMFYUI_COMMIT'][:12]}".replace("  ", " "))
    if "NGC_PYTORCH_TAG" in versions:
        parts.append(f"NGC PyTorch {versions['NGC_PYTORCH_TAG']}")
    if "FILEBROWSER_VERSION" in versions:
        parts.append(f"FileBrowser {versions['FILEBROWSER_VERSION']}")
    return ", ".join(parts)


def render_text(plan: Plan, *, color: bool = False, prune: bool = False) -> str:
    """The human plan: header, one line per item, warnings, summary."""
    lines = [f"Phoenix plan for {plan.root}"]
    pins = pinned_summary(plan.versions)
    if pins:
        lines.append(f"Pinned: {pins}")
    for v in plan.variants:
        lines.append(
            f"Variant: {v.repo} → {v.variant} ({human_size(v.size)} on disk) [{v.origin}]: "
            f"{v.reason}"
        )
    width = max((len(c.dest or c.id) for c in plan.changes), default=10)
    for c in plan.changes:
        mark = MARKS[c.action]
        size = human_size(c.size) if c.kind == "model" else ""
        text = (
            f"  {mark} {c.kind:<8} {c.dest or c.id:<{width}}  {size:<12} {c.id}  "
            f"[{c.origin}]  {c.reason}"
        ).rstrip()
        lines.append(f"\033[{_COLORS[c.action]}m{text}\033[0m" if color else text)
    if plan.warnings:
        lines.append("Warnings:")
        lines.extend(f"  ! {w}" for w in plan.warnings)
    counts = plan.counts()
    known, unknown = plan.download_bytes()
    download = human_size(known) if known else "0 B"
    if unknown:
        download += f" + {unknown} of unknown size (known at apply, or pin with `phoenix lock`)"
    free = human_size(plan.free_bytes) if plan.free_bytes is not None else "unknown"
    removal = "to remove" if prune else "would be removed with --prune"
    lines.append(
        f"Summary: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['delete']} {removal}, {counts['unchanged']} unchanged; "
        f"download {download}; free on {plan.root}: {free}"
    )
    if not plan.has_changes(prune) and counts["delete"]:
        lines.append("Nothing to create or update; `apply --prune` would remove the `-` items.")
    elif not plan.has_changes(prune):
        lines.append("No changes: the workspace matches the desired state.")
    return redact("\n".join(lines))

"""Render a plan as text (one line per item, ``+ ~ - =``) or JSON (``schemas/plan.schema.json``)."""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from provisioner.plan.build import GB, Plan
from provisioner.plan.change import MARKS
from provisioner.redact import redact

_COLORS = {"create": "32", "update": "33", "delete": "31", "unchanged": "2"}


class PlanItem(BaseModel):
    """One item of the JSON plan."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field(description="model, node, package, comfyui or path")
    action: Literal["create", "update", "delete", "unchanged"]
    id: str = Field(description="Stable identity (also the key in state and lock files)")
    origin: str = Field(description="Where the item came from: file:line:col, env:VAR[i], default")
    dest: str | None = Field(description="Destination relative to the workspace root")
    size: int | None = Field(description="Bytes to download; null when unknown offline")
    source: str
    reason: str


class PlanSummary(BaseModel):
    """Counts and totals."""

    model_config = ConfigDict(extra="forbid")
    create: int
    update: int
    delete: int
    unchanged: int
    has_changes: bool
    download_bytes: int = Field(description="Known bytes to download")
    unknown_sizes: int = Field(description="Downloads whose size is unknown offline")
    free_bytes: int | None = Field(description="Free space on the workspace root")


class PlanDocument(BaseModel):
    """The JSON form of ``phoenix plan --format json``."""

    model_config = ConfigDict(
        extra="forbid",
        title="Phoenix plan",
        json_schema_extra={"$id": "https://phoenix.invalid/schemas/plan.schema.json"},
    )
    format_version: Literal[1] = 1
    root: str
    summary: PlanSummary
    items: list[PlanItem]
    warnings: list[str]
    versions: dict[str, str]


def plan_document(plan: Plan, prune: bool = False) -> PlanDocument:
    """The plan as a :class:`PlanDocument`."""
    counts = plan.counts()
    known, unknown = plan.download_bytes()
    return PlanDocument(
        root=plan.root,
        summary=PlanSummary(
            **counts,
            has_changes=plan.has_changes(prune),
            download_bytes=known,
            unknown_sizes=unknown,
            free_bytes=plan.free_bytes,
        ),
        items=[
            PlanItem(
                kind=c.kind,
                action=c.action,
                id=c.id,
                origin=c.origin,
                dest=c.dest,
                size=c.size,
                source=c.source,
                reason=c.reason,
            )
            for c in plan.changes
        ],
        warnings=list(plan.warnings),
        versions=plan.versions,
    )


def render_json(plan: Plan, prune: bool = False) -> str:
    """JSON text of the plan (secrets redacted, as everywhere)."""
    doc = plan_document(plan, prune).model_dump(mode="json")
    return redact(json.dumps(doc, indent=2))


def use_color(stream: Any) -> bool:
    """Color only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org)."""
    return "NO_COLOR" not in os.environ and bool(getattr(stream, "isatty", lambda: False)())


def human_size(size: int | None) -> str:
    """``12.3 GB`` style, or ``size unknown``."""
    if size is None:
        return "size unknown"
    for unit, factor in (("GB", GB), ("MB", 1000**2), ("kB", 1000)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"


def render_text(plan: Plan, *, color: bool = False, prune: bool = False) -> str:
    """The human plan: header, one line per item, warnings, summary."""
    commit = plan.versions.get("COMFYUI_COMMIT", "")[:10]
    lines = [f"Phoenix plan for {plan.root}" + (f" (ComfyUI {commit})" if commit else "")]
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
    if not plan.has_changes(prune):
        lines.append("No changes: the workspace matches the desired state.")
    return redact("\n".join(lines))

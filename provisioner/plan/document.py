"""The JSON plan document (``schemas/plan.schema.json`` is generated from these models).

Imported only for ``--format json`` and ``phoenix schema``, keeping pydantic model building off
the text path.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from provisioner.plan.build import Plan


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
    variant: str | None = Field(
        None, description="The profile variant this file belongs to (fp8, gguf-q4, ...), if any"
    )


class PlanVariant(BaseModel):
    """The variant chosen for a profiled repo, and why."""

    model_config = ConfigDict(extra="forbid")
    repo: str
    variant: str
    reason: str = Field(description="e.g. '32 GiB (env:PHOENIX_VRAM_GIB): fp8; bf16 needs 64 GiB'")
    origin: str
    vram_gib: float = Field(description="VRAM the variant is offered on, in GiB")
    weights: Literal["bf16", "fp8", "gguf"]
    size: int = Field(description="Bytes on disk of the variant's files (approximate)")
    workflow: str | None = Field(description="Example workflow in manifests/workflows/")


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
    variants: list[PlanVariant] = []


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
                variant=c.details.get("variant"),
            )
            for c in plan.changes
        ],
        warnings=list(plan.warnings),
        versions=plan.versions,
        variants=[
            PlanVariant(
                repo=v.repo,
                variant=v.variant,
                reason=v.reason,
                origin=v.origin,
                vram_gib=v.vram_gib,
                weights=v.weights,
                size=v.size,
                workflow=v.workflow,
            )
            for v in plan.variants
        ],
    )

"""Generate the committed JSON Schemas from the pydantic models (``phoenix schema``)."""

from __future__ import annotations

from typing import Any

MANIFEST_SCHEMA_ID = "https://phoenix.invalid/schemas/manifest.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def manifest_json_schema() -> dict[str, Any]:
    """The manifest schema (Draft 2020-12) with descriptions for editors."""
    from provisioner.manifest.models import Manifest

    schema = Manifest.model_json_schema(mode="validation")
    return {"$schema": DIALECT, **schema}


def plan_json_schema() -> dict[str, Any]:
    """The schema of ``phoenix plan --format json``."""
    from provisioner.plan.document import PlanDocument

    return {"$schema": DIALECT, **PlanDocument.model_json_schema(mode="serialization")}


def schema_text(kind: str) -> str:
    """The committed form of a schema: stable key order, two-space indent, trailing newline."""
    import json

    schema = manifest_json_schema() if kind == "manifest" else plan_json_schema()
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"

"""The generated JSON schemas stay equal to their sources, and every shipped example passes them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from provisioner.generate.schema import schema_text
from provisioner.manifest.merge import load_desired
from tests.support.cli import clean_env, run_phoenix
from tests.support.paths import REPO


@pytest.mark.parametrize("kind", ["manifest", "plan"])
def test_committed_schema_equals_generated(kind: str) -> None:
    committed = (REPO / "schemas" / f"{kind}.schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(kind), f"run: phoenix schema --kind {kind} --write schemas"


@pytest.mark.parametrize("kind", ["manifest", "plan"])
def test_schema_is_valid_draft_2020_12_with_descriptions(kind: str) -> None:
    schema = json.loads(schema_text(kind))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    if kind == "manifest":
        for name, body in schema["$defs"].items():
            for prop, spec in body.get("properties", {}).items():
                assert spec.get("description") or "$ref" in spec or "allOf" in spec, (name, prop)


EXAMPLES = [*sorted((REPO / "examples").glob("*.yaml")), REPO / "manifests" / "default.yaml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_manifest_validates(path: Path) -> None:
    result = run_phoenix("validate", "--manifest", str(path), env=clean_env())
    assert result.returncode == 0, result.stderr
    schema = json.loads(schema_text("manifest"))
    from ruamel.yaml import YAML

    jsonschema.Draft202012Validator(schema).validate(YAML(typ="safe").load(path.read_text()))


def test_env_example_is_accepted() -> None:
    env = {}
    for line in (REPO / "examples" / "runpod.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            if value:
                env[key] = value
    desired, _ = load_desired(None, env)
    assert any(m.id.startswith("civitai:") for m in desired.models)

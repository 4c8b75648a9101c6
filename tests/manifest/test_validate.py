"""The fast path (pydantic strict) accepts exactly what the committed JSON Schema accepts."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from ruamel.yaml import YAML

from provisioner.manifest.models import Manifest
from provisioner.manifest.validate import manifest_schema
from tests.support.paths import REPO

BASES = [
    YAML(typ="safe").load(p.read_text())
    for p in [*sorted((REPO / "examples").glob("*.yaml")), REPO / "manifests" / "default.yaml"]
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        ["", "a/b", "loras", "auto", "fp16", "https://x.y/z", "file:///r", "1@2", "a" * 64]
    ),
    st.text(max_size=8),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=6), SCALARS, max_size=2),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_manifests(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(_paths(doc)[1:]))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["type", "ref", "name", "extra", "revision", "fp"]))] = (
                draw(VALUES)
            )
    return doc


def _pydantic_ok(doc: dict[str, Any]) -> bool | None:
    try:
        Manifest.model_validate(doc, strict=True)
        return True
    except ValidationError as exc:
        if any("exactly one file" in str(e["msg"]) for e in exc.errors()):
            return None  # a cross-field rule JSON Schema cannot state
        return False


@settings(max_examples=400, deadline=None)
@given(doc=mutated_manifests())
def test_strict_models_agree_with_the_json_schema(doc: dict[str, Any]) -> None:
    verdict = _pydantic_ok(doc)
    if verdict is None:
        return
    schema_ok = jsonschema.Draft202012Validator(manifest_schema()).is_valid(doc)
    assert verdict == schema_ok, doc


@pytest.mark.parametrize("base", BASES, ids=lambda b: str(len(str(b))))
def test_examples_pass_both(base: dict[str, Any]) -> None:
    assert _pydantic_ok(base) is True
    assert jsonschema.Draft202012Validator(manifest_schema()).is_valid(base)

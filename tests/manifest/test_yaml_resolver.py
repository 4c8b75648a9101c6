"""The manifest loader's resolver and one-walk builder give exactly ruamel's own tags and data."""

from __future__ import annotations

from typing import Any

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, SequenceNode

from provisioner.core.errors import ManifestError
from provisioner.manifest import load

DOCS = [
    "a: yes\nb: no\nc: true\nd: ~\ne: null\nf: 010\ng: 0o10\nh: 0x1F\ni: 1.5e3\nj: .inf\n"
    "k: 2024-01-02\nl: 2024-01-02T03:04:05Z\nm: '1'\nn: -12\no: +3\np: ''\nq: .NaN\nr: 1_000\n",
    "%YAML 1.1\n---\na: yes\nb: on\nc: 010\nd: 1:30\n",
    "version: 1\nmodels:\n  - hf: org/repo\n    files: [a.safetensors, '*.gguf']\n"
    "packages: [numpy>=1.26, 'torch==2.5; sys_platform == \"linux\"']\n",
]


def _tags(node: Any) -> list[str]:
    if isinstance(node, MappingNode):
        return [str(node.tag)] + [t for k, v in node.value for t in (*_tags(k), *_tags(v))]
    if isinstance(node, SequenceNode):
        return [str(node.tag)] + [t for item in node.value for t in _tags(item)]
    return [str(node.tag)]


@pytest.mark.parametrize("text", DOCS)
def test_same_tags_as_ruamels_default_resolver(text: str) -> None:
    plain = YAML(typ="safe", pure=False)
    ours = YAML(typ="safe", pure=False)
    ours.Resolver = load._resolver_class()
    assert _tags(ours.compose(text)) == _tags(plain.compose(text))


@pytest.mark.parametrize("text", DOCS)
def test_same_data_as_ruamels_constructor(text: str) -> None:
    plain = YAML(typ="safe", pure=False)
    want = load._plain(plain.constructor.construct_document(plain.compose(text)))
    assert load._parse_yaml(text, "m.yaml", {}) == want


def test_aliases_expand_to_copies_located_at_their_anchor() -> None:
    text = "base: &b {type: loras}\nmodels:\n  - *b\n  - hf: org/repo\n"
    positions: dict[tuple[str | int, ...], tuple[load.Position, load.Position]] = {}
    data = load._parse_yaml(text, "m.yaml", positions)
    assert data == {"base": {"type": "loras"}, "models": [{"type": "loras"}, {"hf": "org/repo"}]}
    assert positions[("models", 0)] == ((1, 7), (1, 7))  # the anchored mapping
    assert positions[("models", 1, "hf")] == ((4, 5), (4, 9))
    assert positions[("base", "type")] == ((1, 11), (1, 17))


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        (
            "a: 1\nb:\n  c: 1\n  c: 2\n",
            "m.yaml:4:3",
            "duplicate key 'c' (first at line 3, column 3)",
        ),
        ("a: 1\n1: x\n", "m.yaml:2:1", "keys must be text"),
        ("<<: {a: 1}\n", "m.yaml:1:1", "keys must be text"),
        ("a: !!python/name:os.system x\n", "m.yaml:1:4", "YAML syntax error"),
    ],
)
def test_bad_keys_and_tags_are_located(text: str, where: str, words: str) -> None:
    with pytest.raises(ManifestError) as info:
        load._parse_yaml(text, "m.yaml", {})
    assert info.value.where == where
    assert words in info.value.message


def test_the_c_parser_is_in_use() -> None:
    assert load._c_parser_available()

"""The manifest loader's once-per-document resolver gives exactly ruamel's own tags and data."""

from __future__ import annotations

from typing import Any

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, SequenceNode

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
def test_same_tags_and_data_as_ruamels_default_resolver(text: str) -> None:
    plain = YAML(typ="safe", pure=False)
    want_node = plain.compose(text)
    want = plain.constructor.construct_document(want_node)
    got_node, got = load._parse_yaml(text, "m.yaml")
    assert _tags(got_node) == _tags(want_node)
    assert got == want


def test_the_c_parser_is_in_use() -> None:
    assert load._c_parser_available()

"""Item syntaxes users paste into env vars."""

from __future__ import annotations

import pytest

from provisioner.manifest.items import (
    CivitaiRef,
    HFItem,
    NodeItem,
    parse_civitai_ref,
    parse_hf_item,
    parse_node_item,
    without_credentials,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("black-forest-labs/FLUX.1-dev", HFItem("black-forest-labs/FLUX.1-dev", None, None)),
        ("org/repo@v1.0", HFItem("org/repo", "v1.0", None)),
        ("org/repo:ae.safetensors", HFItem("org/repo", None, "ae.safetensors")),
        ("org/repo@abc123:sub/*.safetensors", HFItem("org/repo", "abc123", "sub/*.safetensors")),
        (
            "https://huggingface.co/org/repo/resolve/main/split/model.safetensors",
            HFItem("org/repo", "main", "split/model.safetensors"),
        ),
        ("https://huggingface.co/org/repo/blob/v2/x.gguf", HFItem("org/repo", "v2", "x.gguf")),
        ("https://huggingface.co/org/repo", HFItem("org/repo", None, None)),
    ],
)
def test_hf_items(text: str, expected: HFItem) -> None:
    assert parse_hf_item(text) == expected


@pytest.mark.parametrize(
    "text", ["FLUX.1-dev", "org/repo/extra", "org//repo", "https://example.com/org/repo", "@x/y"]
)
def test_bad_hf_items(text: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_hf_item(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("618692", CivitaiRef(618692, None)),
        ("618692@691639", CivitaiRef(618692, 691639)),
        ("urn:air:flux1:lora:civitai:618692@691639", CivitaiRef(618692, 691639)),
        ("urn:air:sdxl:checkpoint:civitai:101055", CivitaiRef(101055, None)),
        ("https://civitai.com/models/618692/flux-style", CivitaiRef(618692, None)),
        ("https://civitai.com/models/618692?modelVersionId=691639", CivitaiRef(618692, 691639)),
        ("https://civitai.com/api/download/models/691639", CivitaiRef(None, 691639)),
    ],
)
def test_civitai_refs(text: str, expected: CivitaiRef) -> None:
    assert parse_civitai_ref(text) == expected


def test_civitai_key_is_identity() -> None:
    air = parse_civitai_ref("urn:air:flux1:lora:civitai:618692@691639")
    assert air.key == parse_civitai_ref("618692@691639").key == "618692@691639"
    assert parse_civitai_ref("https://civitai.com/api/download/models/5").key == "@5"


@pytest.mark.parametrize(
    "text",
    ["abc", "12@", "@12", "https://example.com/models/1", "https://civitai.com/user/x", "1.5"],
)
def test_bad_civitai_refs(text: str) -> None:
    with pytest.raises(ValueError):
        parse_civitai_ref(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "https://github.com/ltdrdata/ComfyUI-Impact-Pack",
            NodeItem(
                "https://github.com/ltdrdata/ComfyUI-Impact-Pack", None, "ComfyUI-Impact-Pack"
            ),
        ),
        (
            "https://github.com/city96/ComfyUI-GGUF.git@v1.2",
            NodeItem("https://github.com/city96/ComfyUI-GGUF.git", "v1.2", "ComfyUI-GGUF"),
        ),
        ("git@github.com:a/b.git@main", NodeItem("git@github.com:a/b.git", "main", "b")),
        (
            "file:///srv/nodes/my-node@abc123",
            NodeItem("file:///srv/nodes/my-node", "abc123", "my-node"),
        ),
        ("ssh://git@host/x/y.git", NodeItem("ssh://git@host/x/y.git", None, "y")),
    ],
)
def test_node_items(text: str, expected: NodeItem) -> None:
    assert parse_node_item(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://github.com/a/b", "https"),
        ("https://user:secret@github.com/a/b", "credentials"),
        ("https://github.com/a/b?x=1", "query"),
        ("ftp://host/a/b", "expected"),
        ("github.com/a/b", "expected"),
        ("https://github.com/a/b@bad ref", "ref"),
    ],
)
def test_bad_node_items(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_node_item(text)


@pytest.mark.parametrize(
    ("url", "clean", "removed"),
    [
        ("https://user:ghp_SECRET@github.com/a/n", "https://github.com/a/n", 1),
        ("https://ghp_SECRET@github.com/a/n.git", "https://github.com/a/n.git", 1),
        ("https://github.com/a/n?token=SECRET#x", "https://github.com/a/n", 1),
        ("https://u:p@github.com/a/n?access_token=t", "https://github.com/a/n", 2),
        ("ssh://git:SECRET@host/a/n", "ssh://git@host/a/n", 1),
        ("ssh://git@host:2222/a/n", "ssh://git@host:2222/a/n", 0),
        ("git@github.com:a/n.git", "git@github.com:a/n.git", 0),
        ("https://github.com/a/n", "https://github.com/a/n", 0),
    ],
)
def test_without_credentials(url: str, clean: str, removed: int) -> None:
    assert without_credentials(url)[0] == clean and len(without_credentials(url)[1]) == removed

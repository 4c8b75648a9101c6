"""The state file: round trip; a corrupt or tampered file is a located error, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from provisioner.core.errors import StateError
from provisioner.core.layout import Layout
from provisioner.state.store import (
    FileRecord,
    ModelRecord,
    NodeRecord,
    PackageRecord,
    StateStore,
    load_state,
)

SHA = "a" * 64
COMMIT = "c" * 40


def _store(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path)
    store = StateStore(layout)
    store.put_model(
        ModelRecord(
            "hf:a/b/c.safetensors",
            "hf:a/b",
            (FileRecord("models/vae/c.safetensors", 3, 1, SHA),),
            {"revision": COMMIT},
        )
    )
    store.put_node(NodeRecord("ComfyUI-X", "https://example.com/x.git", "v1", COMMIT, SHA))
    store.put_package(PackageRecord("numpy>=1.26", "2.1.0"))
    store.set_comfyui_commit(COMMIT)
    return layout


def test_round_trip_and_owner_only_mode(tmp_path: Path) -> None:
    layout = _store(tmp_path)
    state = load_state(layout)
    assert state.models["hf:a/b/c.safetensors"].files[0].path == "models/vae/c.safetensors"
    assert state.nodes["ComfyUI-X"].commit == COMMIT
    assert state.packages["numpy>=1.26"].installed == "2.1.0"
    assert state.comfyui_commit == COMMIT
    assert layout.state_file.stat().st_mode & 0o777 == 0o600


def _tamper(layout: Layout, change: Any) -> StateError:
    data = json.loads(layout.state_file.read_text())
    change(data)
    layout.state_file.write_text(json.dumps(data))
    with pytest.raises(StateError) as info:
        load_state(layout)
    return info.value


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda d: d["nodes"].update({"": d["nodes"].pop("ComfyUI-X")}), "not a single folder"),
        (lambda d: d["nodes"].update({"..": d["nodes"].pop("ComfyUI-X")}), "not a single folder"),
        (lambda d: d["nodes"].update({"a/b": d["nodes"].pop("ComfyUI-X")}), "not a single folder"),
        (lambda d: d["nodes"]["ComfyUI-X"].update(name="Other"), "records the name 'Other'"),
        (
            lambda d: d["models"]["hf:a/b/c.safetensors"]["files"][0].update(path="../x"),
            "not a path inside the workspace",
        ),
        (
            lambda d: d["models"]["hf:a/b/c.safetensors"]["files"][0].update(path="/etc/x"),
            "not a path inside the workspace",
        ),
        (lambda d: d["nodes"]["ComfyUI-X"].pop("commit"), "commit"),
        (lambda d: d["nodes"]["ComfyUI-X"].update(commit=5), "commit must be str, not int"),
        (lambda d: d.update(models=[1]), "'models' must be dict, not list"),
        (lambda d: d["packages"].update(x=[]), "must be dict, not list"),
        (lambda d: d["models"]["hf:a/b/c.safetensors"].update(files="x"), "'files' must be list"),
        (lambda d: d["models"]["hf:a/b/c.safetensors"]["files"][0].update(size="3"), "size"),
        (lambda d: d.update(comfyui_commit=True), "'comfyui_commit' must be str"),
        (lambda d: d.update(version=99), "unsupported state version 99"),
    ],
)
def test_a_tampered_state_file_is_a_located_error(tmp_path: Path, change: Any, needle: str) -> None:
    layout = _store(tmp_path)
    error = _tamper(layout, change)
    text = error.render()
    assert "state file is corrupt" in text and needle in text, text
    assert str(layout.state_file) in text and "move it aside" in text


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[]", b"null", b"\xff", b"[" * 100_000, b'{"version": 1, "nodes": [1]}'],
)
def test_unreadable_json_is_a_located_error(tmp_path: Path, raw: bytes) -> None:
    layout = _store(tmp_path)
    layout.state_file.write_bytes(raw)
    with pytest.raises(StateError, match="state file is corrupt") as info:
        load_state(layout)
    assert str(layout.state_file) in info.value.render()


def test_a_root_that_is_a_file_is_a_located_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    with pytest.raises(StateError, match="cannot read state file") as info:
        load_state(Layout(tmp_path / "afile"))
    assert "must be a folder" in info.value.render()

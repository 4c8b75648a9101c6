"""Resolution of one model change into file jobs: lock pins replace every API call, and each
job carries the name, hash, folder and staging key placement relies on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import pytest

from provisioner.actions.base import ApplyContext
from provisioner.actions.model_resolve import resolve
from provisioner.actions.model_runner import Runner
from provisioner.core.config import load_versions
from provisioner.core.errors import SourceError
from provisioner.core.layout import Layout
from provisioner.manifest.desired import DesiredModel, request_key
from provisioner.manifest.models import CivitaiModel, HFModel, URLModel
from provisioner.plan.change import Change
from provisioner.state.store import StateStore

SHA_A, SHA_B = "a" * 64, "b" * 64


class NoNetwork:
    """Stands where the HF client and the HTTP session go: any use fails the test."""

    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"resolution used the network ({name}) despite the lock's pins")


def offline_runner(tmp_path: Path) -> Runner:
    layout = Layout(tmp_path / "root")
    ctx = ApplyContext(layout, StateStore(layout), load_versions())
    return Runner(ctx, _session=NoNetwork(), _hf=NoNetwork())


def change_for(model: DesiredModel) -> Change:
    return Change("model", "create", model.id, model.origin, "missing", item=model)


def test_an_hf_model_whose_lock_pins_every_file_resolves_without_the_hub(tmp_path: Path) -> None:
    entry = HFModel(hf="org/repo", files=["*.safetensors"])
    files = [
        {"path": "unet/x.safetensors", "sha256": SHA_A.upper(), "size": 10},
        {"path": "y.safetensors", "sha256": SHA_B},
    ]
    model = DesiredModel(
        "hf:org/repo:*.safetensors",
        "hf",
        entry,
        "m.yaml:3:5",
        "loras",
        pinned={"revision": "c0ffee", "files": json.dumps(files)},
    )
    res = resolve(change_for(model), offline_runner(tmp_path))
    assert [(j.label, j.filename, j.sha256, j.size, j.folder) for j in res.files] == [
        ("hf:org/repo/unet/x.safetensors", "x.safetensors", SHA_A, 10, "loras"),
        ("hf:org/repo/y.safetensors", "y.safetensors", SHA_B, None, "loras"),
    ]
    assert res.resolved == {
        "request": request_key(model),
        "repo": "org/repo",
        "revision": "c0ffee",
        "requested_revision": "main",
        "paths": json.dumps(["unet/x.safetensors", "y.safetensors"]),
    }
    keys = {j.staging_key for j in res.files}
    assert len(keys) == 2 and all(len(k) == 32 for k in keys)  # stable per commit and path


def test_a_pinned_civitai_file_resolves_without_the_api(tmp_path: Path) -> None:
    entry = CivitaiModel(civitai="618692@691639", type="loras")
    pins = {
        "model_id": "618692",
        "version_id": "691639",
        "file_id": "7",
        "download_url": "https://civitai.com/api/download/models/691639",
        "model_name": "A LoRA",
        "version_name": "v1",
    }
    model = DesiredModel(
        "civitai:618692@691639",
        "civitai",
        entry,
        "env:CIVITAI_LORAS_TO_DOWNLOAD[0]",
        "loras",
        filename="lora.safetensors",
        sha256=SHA_A.upper(),
        size=123,
        pinned=pins,
    )
    res = resolve(change_for(model), offline_runner(tmp_path))
    [job] = res.files
    assert (job.label, job.filename, job.sha256, job.size, job.folder) == (
        "civitai:618692@691639",
        "lora.safetensors",
        SHA_A,
        123,
        "loras",
    )
    assert res.resolved == {"request": request_key(model), **pins}


def test_a_civitai_file_without_a_type_takes_the_api_folder_later(tmp_path: Path) -> None:
    pins = {"download_url": "https://civitai.com/api/download/models/1", "file_id": "2"}
    model = DesiredModel(
        "civitai:1",
        "civitai",
        CivitaiModel(civitai="1"),
        "m",
        None,
        filename="x.safetensors",
        sha256=SHA_A,
        pinned=pins,
    )
    [job] = resolve(change_for(model), offline_runner(tmp_path)).files
    assert job.folder is None and job.source_folder is None


@pytest.mark.parametrize(
    ("fields", "filename"),
    [
        ({"url": "https://example.com/files/My%20Model.safetensors"}, "My Model.safetensors"),
        ({"url": "https://example.com/dl?id=3", "name": "named.gguf"}, "named.gguf"),
    ],
)
def test_a_url_model_is_named_from_its_entry_or_url(
    tmp_path: Path, fields: dict[str, Any], filename: str
) -> None:
    entry = URLModel(sha256=SHA_B, type="vae", **fields)
    model = DesiredModel(f"url:{entry.url}", "url", entry, "m", "vae", sha256=SHA_B)
    res = resolve(change_for(model), offline_runner(tmp_path))
    [job] = res.files
    assert (job.label, job.filename, job.sha256, job.folder) == (
        f"url:{filename}",
        filename,
        SHA_B,
        "vae",
    )
    assert res.resolved == {"request": request_key(model), "url": entry.url}


def test_a_url_without_a_usable_file_name_asks_for_one(tmp_path: Path) -> None:
    entry = URLModel(url="https://example.com/", sha256=SHA_B)
    model = DesiredModel(f"url:{entry.url}", "url", entry, "m", sha256=SHA_B)
    with pytest.raises(SourceError) as info:
        resolve(change_for(model), offline_runner(tmp_path))
    assert "set 'name'" in info.value.render()

"""`phoenix lock` resolution against real servers, and `apply --locked` using only the lock."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from provisioner.apply import apply_all
from provisioner.core.config import load_versions
from provisioner.core.errors import LockFileError
from provisioner.core.layout import Layout
from provisioner.sources.resolve import resolve_lock
from provisioner.state.lockfile import (
    apply_lock,
    check_lock,
    load_lock,
    lock_drift,
    lock_path_for,
    write_lock,
)
from provisioner.state.store import load_state
from tests.support.civitai import LoopbackHub
from tests.support.desired import FLUX_SET, desired_from
from tests.support.hub import GATED_TOKEN, FluxHub
from tests.support.safetensors import safetensors_bytes

FLUX = "black-forest-labs/FLUX.1-dev"


def test_lock_path_next_to_the_manifest_or_in_cwd(tmp_path: Path) -> None:
    assert lock_path_for(str(tmp_path / "pod.yaml")) == tmp_path / "pod.lock.json"
    assert lock_path_for(None, cwd=tmp_path) == tmp_path / "phoenix.lock.json"


def test_lock_pins_commits_hashes_and_sizes_and_never_a_token(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    desired, secrets, manifest = desired_from(tmp_path, FLUX_SET, {"HF_TOKEN": GATED_TOKEN})
    lock, errors = resolve_lock(desired, secrets)
    assert errors == []
    path = lock_path_for(str(manifest))
    write_lock(lock, path)
    text = path.read_text()
    assert GATED_TOKEN not in text
    data = json.loads(text)
    ae = data["models"][f"hf:{FLUX}/ae.safetensors"]
    assert ae["revision"] == flux_hub.hub.repos[FLUX].commits[-1]
    assert ae["requested_revision"] == "main"
    assert ae["files"] == [
        {
            "path": "ae.safetensors",
            "filename": "ae.safetensors",
            "sha256": flux_hub.sha(FLUX, "ae.safetensors"),
            "size": len(flux_hub.files[FLUX]["ae.safetensors"]),
            "blob_id": ae["files"][0]["blob_id"],
        }
    ]
    assert len(data["models"]) == 4
    assert load_lock(path) == lock.__class__(**{**lock.__dict__, "path": str(path)})
    check_lock(desired, load_lock(path))
    assert lock_drift(desired, load_lock(path)) == []


def test_locked_apply_fetches_the_locked_commit_without_resolution_calls(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    repo = flux_hub.hub.repo("acme/moving")
    old = safetensors_bytes({"double_blocks.0.old": 700})
    new = safetensors_bytes({"double_blocks.0.new": 900})
    repo.commit_files({"m.safetensors": old}, "old")
    manifest = "models:\n  - hf: acme/moving\n    files: [m.safetensors]\n    type: unet\n"
    desired, secrets, _ = desired_from(tmp_path, manifest)
    lock, errors = resolve_lock(desired, secrets)
    assert errors == []
    repo.commit_files({"m.safetensors": new}, "upstream moved on")

    flux_hub.proxy.reset()
    layout = Layout(tmp_path / "locked")
    report = apply_all(desired, layout, load_versions(), secrets, locked=lock)
    assert report.ok and report.remaining == []
    placed = layout.root / "models/unet/m.safetensors"
    assert hashlib.sha256(placed.read_bytes()).hexdigest() == hashlib.sha256(old).hexdigest()
    paths = [r.path for r in flux_hub.proxy.requests]
    assert paths and all("/resolve/" in p for p in paths), paths
    assert load_state(layout).models["hf:acme/moving/m.safetensors"].resolved["revision"] == (
        repo.commits[0]
    )
    # a locked rerun is a no-op without any request
    flux_hub.proxy.reset()
    again = apply_all(desired, layout, load_versions(), secrets, locked=lock)
    assert again.results == [] and flux_hub.proxy.requests == []

    # without the lock the floating revision follows upstream: the placed file is outdated
    unlocked = apply_all(desired, Layout(tmp_path / "floating"), load_versions(), secrets)
    assert unlocked.ok
    floating = tmp_path / "floating/models/unet/m.safetensors"
    assert floating.read_bytes() == new


def test_locked_apply_refuses_a_changed_manifest_or_env(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    desired, secrets, _ = desired_from(tmp_path, FLUX_SET)
    lock, _ = resolve_lock(desired, secrets)
    changed, secrets2, _ = desired_from(
        tmp_path, FLUX_SET + "  - hf: acme/mystery\n    files: ['*.safetensors']\n"
    )
    assert "hf:acme/mystery:*.safetensors is not in the lock file" in lock_drift(changed, lock)
    with pytest.raises(LockFileError, match="changed since `phoenix lock`"):
        apply_all(changed, Layout(tmp_path / "r"), load_versions(), secrets2, locked=lock)
    by_env, _, _ = desired_from(
        tmp_path, FLUX_SET, {"CIVITAI_LORAS_TO_DOWNLOAD": "618692"}
    )
    with pytest.raises(LockFileError):
        check_lock(by_env, lock)
    assert not (tmp_path / "r" / "models").exists()


def test_glob_entries_lock_every_matched_file(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    manifest = "models:\n  - hf: black-forest-labs/FLUX.1-dev\n    files: ['*.safetensors']\n"
    desired, secrets, _ = desired_from(tmp_path, manifest)
    lock, _ = resolve_lock(desired, secrets)
    entry = lock.models[f"hf:{FLUX}:*.safetensors"]
    assert [f["path"] for f in entry["files"]] == ["ae.safetensors", "flux1-dev.safetensors"]
    pinned = apply_lock(desired, lock).models[0]
    assert pinned.pinned["revision"] == entry["revision"]
    assert pinned.size == sum(f["size"] for f in entry["files"])
    flux_hub.proxy.reset()
    layout = Layout(tmp_path / "root")
    report = apply_all(desired, layout, load_versions(), secrets, locked=lock)
    assert report.ok and report.remaining == []
    assert all("/resolve/" in r.path for r in flux_hub.proxy.requests)
    assert (layout.root / "models/vae/ae.safetensors").exists()
    assert (layout.root / "models/diffusion_models/flux1-dev.safetensors").exists()


def test_civitai_lock_pins_version_file_hash_and_url(
    civitai: LoopbackHub, tmp_path: Path
) -> None:
    data = safetensors_bytes({"lora_unet_x.lora_down.weight": 64})
    civitai.add_model(
        5, name="L", type="LORA",
        versions=[{"id": 50, "files": [{"name": "l.safetensors", "data": data}]}],
    )
    desired, secrets, _ = desired_from(tmp_path, "models:\n  - civitai: 5\n")
    lock, errors = resolve_lock(desired, secrets)
    assert errors == []
    pinned = lock.models["civitai:5"]
    assert (pinned["version_id"], pinned["folder"]) == (50, "loras")
    assert pinned["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert pinned["download_url"].startswith(civitai.api_base + "/api/download/models/50")
    civitai.reset()
    layout = Layout(tmp_path / "root")
    report = apply_all(desired, layout, load_versions(), secrets, locked=lock)
    assert report.ok, report.failed
    assert civitai.requests_to("/api/v1/") == []
    assert (layout.root / "models/loras/l.safetensors").read_bytes() == data


def test_nodes_are_locked_to_the_commit_their_ref_points_at(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    node_repo = flux_hub.hub.repos[FLUX].path  # any real git repository serves as a node
    url = f"file://{node_repo}"
    manifest = f"nodes:\n  - url: {url}\n    ref: main\n    name: demo\n"
    desired, secrets, _ = desired_from(tmp_path, manifest)
    lock, errors = resolve_lock(desired, secrets)
    assert errors == []
    assert lock.nodes == {
        "node:demo": {"url": url, "ref": "main", "commit": flux_hub.hub.repos[FLUX].commits[-1]}
    }
    assert apply_lock(desired, lock).nodes[0].locked_commit == flux_hub.hub.repos[FLUX].commits[-1]

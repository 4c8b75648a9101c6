"""manifests/workflows/: each variant's example workflow loads only files that variant places."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from provisioner.manifest.models import HFModel
from provisioner.manifest.profiles import load_profile_file
from provisioner.manifest.variants import VramFact, expand

REPO = Path(__file__).parents[2]
WORKFLOWS = REPO / "manifests" / "workflows"

#: loader class -> (input naming a file, the ComfyUI folder it lists); ComfyUI v0.3.77 nodes.py
#: (UNETLoader, CLIPLoader, DualCLIPLoader, VAELoader) and ComfyUI-GGUF nodes.py (UnetLoaderGGUF)
LOADERS = {
    "UNETLoader": {"unet_name": "diffusion_models"},
    "UnetLoaderGGUF": {"unet_name": "diffusion_models"},
    "CLIPLoader": {"clip_name": "text_encoders"},
    "DualCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    "VAELoader": {"vae_name": "vae"},
}


def _variants() -> list[tuple[str, str]]:
    return [
        (repo, name)
        for repo, profile in load_profile_file().profiles.items()
        for name, variant in profile.variants.items()
        if variant.workflow
    ]


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((WORKFLOWS / name).read_text())
    return data


@pytest.mark.parametrize(("repo", "variant"), _variants())
def test_loaders_name_files_the_variant_places(repo: str, variant: str) -> None:
    profile = load_profile_file().profiles[repo]
    choice, models = expand(
        HFModel(hf=repo, variant=variant), profile, VramFact(80, "test"), "test"
    )
    placed = {(m.folder, m.filename) for m in models}
    assert choice.workflow is not None
    nodes = _load(choice.workflow)
    loaded: set[tuple[str | None, str | None]] = set()
    for key, node in nodes.items():
        for other in node["inputs"].values():  # links point at nodes of this workflow
            if isinstance(other, list):
                assert str(other[0]) in nodes, (choice.workflow, key, other)
        for field, folder in LOADERS.get(node["class_type"], {}).items():
            loaded.add((folder, node["inputs"][field]))
    assert loaded and loaded <= placed, (choice.workflow, loaded - placed)
    # every diffusion model, text encoder and VAE the variant places is used
    assert loaded == placed, (choice.workflow, placed - loaded)
    gguf = any(n["class_type"] == "UnetLoaderGGUF" for n in nodes.values())
    assert gguf == (profile.variants[variant].weights == "gguf")
    if gguf:
        assert "gguf" in profile.variants[variant].nodes
    assert any(n["class_type"] == "SaveImage" for n in nodes.values())


def test_every_workflow_file_is_named_by_a_variant_and_shipped() -> None:
    named = {load_profile_file().profiles[repo].variants[v].workflow for repo, v in _variants()}
    on_disk = {p.name for p in WORKFLOWS.glob("*.json")}
    assert on_disk == named
    pyproject = (REPO / "pyproject.toml").read_text()  # tomllib is 3.11+; Phoenix runs on 3.10
    section = pyproject.split('"share/phoenix/manifests/workflows" = [', 1)[1].split("]", 1)[0]
    listed = {line.strip().strip('",') for line in section.splitlines() if line.strip()}
    assert listed == {f"manifests/workflows/{n}" for n in on_disk}
    assert "COPY manifests /opt/phoenix/manifests" in (REPO / "Dockerfile").read_text()

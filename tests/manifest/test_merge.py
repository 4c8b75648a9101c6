"""Merge: defaults < manifest < env, with every item's origin."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.core.errors import EnvError, ManifestError
from provisioner.manifest.merge import load_desired

FLUX_FILES = {
    "hf:black-forest-labs/FLUX.1-dev/flux1-dev.safetensors": "diffusion_models",
    "hf:black-forest-labs/FLUX.1-dev/ae.safetensors": "vae",
    "hf:comfyanonymous/flux_text_encoders/clip_l.safetensors": "text_encoders",
    "hf:comfyanonymous/flux_text_encoders/t5xxl_fp16.safetensors": "text_encoders",
}


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "manifest.yaml"
    path.write_text(text)
    return str(path)


def test_default_is_the_flux_dev_set() -> None:
    desired, secrets = load_desired(None, {})
    assert {m.id: m.folder for m in desired.models} == FLUX_FILES
    assert {m.origin for m in desired.models} == {"default"}
    assert any("gated" in w and "HUGGINGFACE_TOKEN" in w for w in desired.warnings)
    assert secrets.hf_token is None


def test_token_silences_the_gated_warning() -> None:
    desired, secrets = load_desired(None, {"HF_TOKEN": "hf_alias_value"})
    assert not any("gated" in w for w in desired.warnings)
    assert secrets.hf_token == "hf_alias_value"


def test_manifest_models_replace_the_default(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nmodels:\n  - civitai: 618692@691639\n    type: loras\n")
    desired, _ = load_desired(path, {})
    assert [m.id for m in desired.models] == ["civitai:618692@691639"]
    assert desired.models[0].origin == f"{path}:3:5"


def test_empty_hf_var_means_no_default() -> None:
    desired, _ = load_desired(None, {"HF_REPOS_TO_DOWNLOAD": ""})
    assert desired.models == ()


def test_env_lists_append_to_manifest_lists_and_merge_duplicates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\n"
        "models:\n"
        "  - civitai: 618692@691639\n"
        "    type: loras\n"
        "nodes:\n"
        "  - url: https://github.com/city96/ComfyUI-GGUF\n"
        "    ref: v1.0\n"
        "packages: ['six']\n",
    )
    env = {
        "CIVITAI_LORAS_TO_DOWNLOAD": "urn:air:flux1:lora:civitai:618692@691639, 42",
        "COMFY_CUSTOM_NODE_GIT_URLS": "https://github.com/city96/ComfyUI-GGUF.git",
        "EXTRA_PYTHON_PACKAGES": "six numpy>=1.26,<3",
    }
    desired, _ = load_desired(path, env)
    assert [(m.id, m.origin) for m in desired.models] == [
        ("civitai:618692@691639", f"{path}:3:5"),
        ("civitai:42", "env:CIVITAI_LORAS_TO_DOWNLOAD[1]"),
    ]
    assert [(n.name, n.spec.ref) for n in desired.nodes] == [("ComfyUI-GGUF", "v1.0")]
    assert [(p.requirement, p.origin) for p in desired.packages] == [
        ("six", f"{path}:8:12"),
        ("numpy>=1.26,<3", "env:EXTRA_PYTHON_PACKAGES[1]"),
    ]


def test_env_scalars_override_manifest(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\nmodels: []\nstorage:\n  mode: volume\nservices:\n  filebrowser:\n"
        "    username: bob\nsecurity:\n  paranoid: false\n",
    )
    env = {
        "USE_VOLUME": "false",
        "FB_USERNAME": "alice",
        "PARANOID_MODE": "yes",
        "PHOENIX_ROOT": "/data",
        "DEBUG_MODE": "1",
    }
    desired, _ = load_desired(path, env)
    m = desired.manifest
    assert m.storage.mode == "ephemeral" and m.storage.root == "/data"
    assert m.services.filebrowser.username == "alice"
    assert m.security.paranoid is True and m.debug is True
    assert desired.scalar_origins["services.filebrowser.username"] == "env:FB_USERNAME"


def test_profile_expands_env_repo_with_companions() -> None:
    desired, _ = load_desired(None, {"HF_REPOS_TO_DOWNLOAD": "black-forest-labs/FLUX.1-dev"})
    assert {m.id: m.folder for m in desired.models} == FLUX_FILES
    origins = {m.id: m.origin for m in desired.models}
    assert (
        origins["hf:black-forest-labs/FLUX.1-dev/ae.safetensors"] == "env:HF_REPOS_TO_DOWNLOAD[0]"
    )
    assert origins["hf:comfyanonymous/flux_text_encoders/clip_l.safetensors"] == (
        "env:HF_REPOS_TO_DOWNLOAD[0] (profile)"
    )


def test_unknown_repo_without_files_fetches_safetensors_with_a_warning() -> None:
    desired, _ = load_desired(None, {"HF_REPOS_TO_DOWNLOAD": "someone/some-model"})
    assert [m.id for m in desired.models] == ["hf:someone/some-model:*.safetensors"]
    assert any("no profile" in w for w in desired.warnings)


def test_all_thirteen_seed_variables_at_once() -> None:
    env = {
        "DEBUG_MODE": "true",
        "HUGGINGFACE_TOKEN": "hf_planted_secret_1",
        "CIVITAI_TOKEN": "civitai_planted_secret_2",
        "HF_REPOS_TO_DOWNLOAD": "black-forest-labs/FLUX.1-schnell,org/repo:x.gguf",
        "CIVITAI_CHECKPOINTS_TO_DOWNLOAD": "101055",
        "CIVITAI_LORAS_TO_DOWNLOAD": "618692@691639",
        "CIVITAI_VAES_TO_DOWNLOAD": "https://civitai.com/api/download/models/333",
        "EXTRA_PYTHON_PACKAGES": "numpy>=1.26,<3 six",
        "FB_USERNAME": "operator",
        "FB_PASSWORD": "fb_planted_secret_3",
        "USE_VOLUME": "true",
        "PARANOID_MODE": "true",
        "COMFY_CUSTOM_NODE_GIT_URLS": "https://github.com/city96/ComfyUI-GGUF@v1",
    }
    desired, secrets = load_desired(None, env)
    ids = {m.id: (m.folder, m.origin) for m in desired.models}
    assert ids["civitai:101055"] == ("checkpoints", "env:CIVITAI_CHECKPOINTS_TO_DOWNLOAD[0]")
    assert ids["civitai:618692@691639"] == ("loras", "env:CIVITAI_LORAS_TO_DOWNLOAD[0]")
    assert ids["civitai:@333"] == ("vae", "env:CIVITAI_VAES_TO_DOWNLOAD[0]")
    assert ids["hf:org/repo/x.gguf"] == (None, "env:HF_REPOS_TO_DOWNLOAD[1]")
    assert (
        ids["hf:black-forest-labs/FLUX.1-schnell/flux1-schnell.safetensors"][0]
        == "diffusion_models"
    )
    assert desired.nodes[0].origin == "env:COMFY_CUSTOM_NODE_GIT_URLS[0]"
    assert secrets.civitai_token == "civitai_planted_secret_2"
    assert "planted" not in repr(desired) and "planted" not in repr(secrets)


def test_civitai_forms_are_stored_canonically(tmp_path: Path) -> None:
    from provisioner.manifest.desired import request_key

    path = write(
        tmp_path,
        "version: 1\nmodels:\n  - civitai: urn:air:flux1:lora:civitai:618692@691639\n"
        "    type: loras\n",
    )
    from_manifest, _ = load_desired(path, {})
    from_env, _ = load_desired(
        None, {"CIVITAI_LORAS_TO_DOWNLOAD": "618692@691639", "HF_REPOS_TO_DOWNLOAD": ""}
    )
    assert from_manifest.models[0].entry.civitai == "618692@691639"
    assert request_key(from_manifest.models[0]) == request_key(from_env.models[0])


def test_a_named_node_may_have_a_url_no_folder_name_derives_from(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    url = "https://gitea.example.com/team/%E3%83%8E%E3%83%BC%E3%83%89"
    path.write_text(f"version: 1\nnodes:\n  - url: {url}\n    name: MyNode\n")
    desired, _ = load_desired(str(path), {"HF_REPOS_TO_DOWNLOAD": ""})
    assert [(n.name, n.spec.url) for n in desired.nodes] == [("MyNode", url)]
    path.write_text(f"version: 1\nnodes:\n  - url: {url}\n")
    with pytest.raises(ManifestError, match="give the node a 'name'"):
        load_desired(str(path), {"HF_REPOS_TO_DOWNLOAD": ""})


def test_download_connections_from_manifest_and_env(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nmodels: []\ndownloads:\n  connections: 4\n")
    assert load_desired(path, {})[0].manifest.downloads.connections == 4
    desired, _ = load_desired(path, {"PHOENIX_DOWNLOAD_CONNECTIONS": " 2 "})
    assert desired.manifest.downloads.connections == 2
    assert desired.scalar_origins["downloads.connections"] == "env:PHOENIX_DOWNLOAD_CONNECTIONS"
    assert load_desired(None, {})[0].manifest.downloads.connections == 8


@pytest.mark.parametrize("raw", ["0", "17"])
def test_download_connections_out_of_range_names_the_variable(raw: str) -> None:
    with pytest.raises((EnvError, ManifestError)) as caught:
        load_desired(None, {"PHOENIX_DOWNLOAD_CONNECTIONS": raw})
    assert "PHOENIX_DOWNLOAD_CONNECTIONS" in f"{caught.value.where} {caught.value.message}"

"""The env overlay: env vars as manifest overrides (scalars) and appended entries (lists)."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.core.errors import EnvError
from provisioner.manifest.env_overlay import (
    DEFAULT_ORIGIN,
    Sections,
    Sourced,
    apply_env_lists,
    apply_env_scalars,
)


def test_scalars_set_their_manifest_paths_without_touching_the_given_sections() -> None:
    services = {"filebrowser": {"username": "bob", "port": 8080}}
    data: dict[str, Any] = {"version": 1, "services": services}
    origins = apply_env_scalars(
        data,
        {"FB_USERNAME": "alice", "USE_VOLUME": "no", "DEBUG_MODE": "1", "PHOENIX_ROOT": "/data"},
    )
    assert data["services"] == {"filebrowser": {"username": "alice", "port": 8080}}
    assert services["filebrowser"]["username"] == "bob"  # copied on the way down, not mutated
    assert data["storage"] == {"mode": "ephemeral", "root": "/data"}
    assert data["debug"] is True
    assert origins == {
        "services.filebrowser.username": "env:FB_USERNAME",
        "storage.mode": "env:USE_VOLUME",
        "debug": "env:DEBUG_MODE",
        "storage.root": "env:PHOENIX_ROOT",
    }


def test_an_empty_bool_is_unset_and_lists_secrets_and_unmapped_vars_are_not_scalars() -> None:
    data: dict[str, Any] = {}
    env = {
        "PARANOID_MODE": " ",
        "HF_REPOS_TO_DOWNLOAD": "a/b",
        "HUGGINGFACE_TOKEN": "hf_x",
        "PHOENIX_INSTALLER": "pip",
    }
    assert apply_env_scalars(data, env) == {}
    assert data == {}


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"PARANOID_MODE": "maybe"}, "expected true/false"),
        ({"FB_USERNAME": "  "}, "is set but empty"),
        ({"PHOENIX_DOWNLOAD_CONNECTIONS": "eight"}, "expected a whole number"),
        ({"PHOENIX_DOWNLOAD_CONNECTIONS": "-1"}, "expected a whole number"),
        ({"PHOENIX_DOWNLOAD_CONNECTIONS": "2.5"}, "expected a whole number"),
    ],
)
def test_a_bad_scalar_names_its_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(EnvError) as caught:
        apply_env_scalars({}, env)
    assert caught.value.where == f"env:{next(iter(env))}"
    assert words in caught.value.message


def test_list_items_are_appended_after_the_manifest_entries_with_their_tags() -> None:
    sections = Sections(models=[Sourced({"civitai": "1"}, "m.yaml:3:5")])
    env = {
        "HF_REPOS_TO_DOWNLOAD": "org/repo@v2:x.gguf",
        "CIVITAI_LORAS_TO_DOWNLOAD": "618692@691639, 42",
        "COMFY_CUSTOM_NODE_GIT_URLS": "https://github.com/city96/ComfyUI-GGUF@v1",
        "EXTRA_PYTHON_PACKAGES": "six numpy>=1.26,<3",
    }
    apply_env_lists(sections, env, has_manifest_models=True)
    assert [(s.data, s.origin) for s in sections.models] == [
        ({"civitai": "1"}, "m.yaml:3:5"),
        ({"hf": "org/repo", "revision": "v2", "files": ["x.gguf"]}, "env:HF_REPOS_TO_DOWNLOAD[0]"),
        ({"civitai": "618692@691639", "type": "loras"}, "env:CIVITAI_LORAS_TO_DOWNLOAD[0]"),
        ({"civitai": "42", "type": "loras"}, "env:CIVITAI_LORAS_TO_DOWNLOAD[1]"),
    ]
    assert [(s.data, s.origin) for s in sections.nodes] == [
        (
            {"url": "https://github.com/city96/ComfyUI-GGUF", "ref": "v1"},
            "env:COMFY_CUSTOM_NODE_GIT_URLS[0]",
        )
    ]
    assert [(s.data, s.origin) for s in sections.packages] == [
        ("six", "env:EXTRA_PYTHON_PACKAGES[0]"),
        ("numpy>=1.26,<3", "env:EXTRA_PYTHON_PACKAGES[1]"),
    ]


@pytest.mark.parametrize(
    ("env", "has_manifest_models", "default_added"),
    [
        ({}, False, True),
        ({}, True, False),  # the manifest's models replace the default
        ({"HF_REPOS_TO_DOWNLOAD": ""}, False, False),  # set empty: nothing from Hugging Face
    ],
)
def test_the_default_models_only_when_the_hf_var_is_unset_and_the_manifest_lists_none(
    env: dict[str, str], has_manifest_models: bool, default_added: bool
) -> None:
    sections = Sections()
    apply_env_lists(sections, env, has_manifest_models=has_manifest_models)
    assert bool(sections.models) is default_added
    assert all(s.origin == DEFAULT_ORIGIN for s in sections.models)
    if default_added:
        repos = {s.data["hf"] for s in sections.models}  # manifests/default.yaml
        assert repos == {"black-forest-labs/FLUX.1-dev", "comfyanonymous/flux_text_encoders"}


def test_a_bad_item_names_the_variable_and_the_item() -> None:
    with pytest.raises(EnvError) as info:
        apply_env_lists(
            Sections(), {"CIVITAI_LORAS_TO_DOWNLOAD": "1 2 nope"}, has_manifest_models=True
        )
    assert info.value.where == "env:CIVITAI_LORAS_TO_DOWNLOAD[2]"
    assert "'nope'" in info.value.message


def test_a_bad_item_is_shown_without_its_credential() -> None:
    item = "https://civitai.com/api/download/models/691639?token=abcSECRET"
    with pytest.raises(EnvError) as info:
        apply_env_lists(Sections(), {"CIVITAI_LORAS_TO_DOWNLOAD": item}, has_manifest_models=True)
    text = info.value.render()
    assert "env:CIVITAI_LORAS_TO_DOWNLOAD[0]" in text and "set CIVITAI_TOKEN" in text
    assert "abcSECRET" not in text and "models/691639" in text


def test_a_bad_requirement_list_names_the_variable() -> None:
    with pytest.raises(EnvError) as info:
        apply_env_lists(Sections(), {"EXTRA_PYTHON_PACKAGES": "numpy>=,"}, has_manifest_models=True)
    assert info.value.where == "env:EXTRA_PYTHON_PACKAGES"

"""Profiles of known HF repos (``manifests/profiles.yaml``): files, folders, companions."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel, ConfigDict

from provisioner.core.errors import ConfigError
from provisioner.manifest.models import ModelFolder


class Profile(BaseModel):
    """What a known repo needs: files → ComfyUI folder, companion entries, gated or not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gated: bool = False
    files: dict[str, ModelFolder]
    with_: list[dict[str, Any]] = []

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Profile:
        data = dict(data)
        if "with" in data:
            data["with_"] = data.pop("with")
        return cls.model_validate(data)


@functools.lru_cache(maxsize=1)
def load_profiles() -> dict[str, Profile]:
    """All shipped profiles by repo id (cached; the file ships with Phoenix)."""
    from ruamel.yaml import YAML

    from provisioner.core.resources import manifests_dir

    path = manifests_dir() / "profiles.yaml"
    try:
        raw = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        return {repo: Profile.parse(body) for repo, body in raw["profiles"].items()}
    except Exception as exc:  # a broken shipped file is Phoenix's bug, reported plainly
        raise ConfigError(f"invalid profiles file: {exc}", where=str(path)) from exc

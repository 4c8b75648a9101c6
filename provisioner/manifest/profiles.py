"""Profiles of known HF repos (``manifests/profiles.yaml``): files, folders, companions, and
the variants (bf16, fp8, GGUF) a repo can be placed as."""

from __future__ import annotations

import functools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from provisioner.core.errors import ConfigError
from provisioner.manifest.models import HF_REPO_RE, SHA256_RE, ModelFolder, NodeSpec

#: What a variant's diffusion model holds; the launch flags follow it.
Weights = Literal["bf16", "fp8", "gguf"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariantFile(_Frozen):
    """One file of a variant: where it comes from, where it goes, how big it is."""

    hf: str = Field(pattern=HF_REPO_RE)
    path: str = Field(min_length=1)
    type: ModelFolder
    #: bytes; the Hub page's rounded figure when ``size_exact`` is false
    size: int = Field(gt=0)
    size_exact: bool = True
    sha256: str | None = Field(None, pattern=SHA256_RE)

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class Variant(_Frozen):
    """A complete file set that runs the model, and the VRAM it is offered on."""

    vram_gib: float = Field(gt=0)
    weights: Weights
    files: list[VariantFile] = Field(min_length=1)
    nodes: list[str] = []
    workflow: str | None = None

    @property
    def size(self) -> int:
        """Bytes on disk (approximate when a file's size is)."""
        return sum(f.size for f in self.files)


class Profile(_Frozen):
    """What a known repo needs: files → ComfyUI folder and companion entries, or variants."""

    gated: bool = False
    license: str | None = None
    files: dict[str, ModelFolder] = {}
    with_: list[dict[str, Any]] = []
    #: best first: ``variant: auto`` takes the first that fits
    variants: dict[str, Variant] = {}

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Profile:
        data = dict(data)
        if "with" in data:
            data["with_"] = data.pop("with")
        return cls.model_validate(data)


class Profiles(_Frozen):
    """The whole profiles file: node pins by key, profiles by repo id."""

    nodes: dict[str, NodeSpec] = {}
    profiles: dict[str, Profile]


@functools.lru_cache(maxsize=1)
def load_profile_file() -> Profiles:
    """The shipped profiles file, checked (cached; the file ships with Phoenix)."""
    from ruamel.yaml import YAML

    from provisioner.core.resources import manifests_dir

    path = manifests_dir() / "profiles.yaml"
    try:
        raw = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        nodes = {key: NodeSpec.model_validate(body) for key, body in raw.get("nodes", {}).items()}
        profiles = {repo: Profile.parse(body) for repo, body in raw["profiles"].items()}
        for repo, profile in profiles.items():
            for name, variant in profile.variants.items():
                missing = [key for key in variant.nodes if key not in nodes]
                if missing:
                    raise ValueError(f"{repo} variant {name} names unknown nodes {missing}")
        return Profiles(nodes=nodes, profiles=profiles)
    except Exception as exc:  # a broken shipped file is Phoenix's bug, reported plainly
        raise ConfigError(f"invalid profiles file: {exc}", where=str(path)) from exc


def load_profiles() -> dict[str, Profile]:
    """All shipped profiles by repo id."""
    return load_profile_file().profiles

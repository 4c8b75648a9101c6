"""The desired state: the validated manifest expanded into items, each with its origin.

Produced by :func:`provisioner.manifest.merge.build_desired`; consumed by every action kind's
``observe``/``diff``/``apply``. Secrets travel separately (:class:`Secrets`) and never appear in
a :class:`DesiredState`, so nothing that renders the plan can print them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from provisioner.manifest.models import CivitaiModel, HFModel, Manifest, NodeSpec, URLModel

ModelSource = Literal["hf", "civitai", "url"]


@dataclass(frozen=True)
class DesiredModel:
    """One model item. An HF entry with literal file names becomes one item per file.

    ``id`` is the identity used in the plan, the state file and the lock file:
    ``hf:org/repo/path/in/repo`` (one literal file), ``hf:org/repo:pattern`` (a glob entry),
    ``civitai:MODEL`` or ``civitai:MODEL@VERSION``, ``url:URL``.
    """

    id: str
    source: ModelSource
    entry: HFModel | CivitaiModel | URLModel
    origin: str
    folder: str | None = None
    filename: str | None = None
    sha256: str | None = None
    #: bytes, when known offline (from the lock file)
    size: int | None = None
    #: what a lock file pinned: e.g. ``revision`` (HF commit), ``version_id``, ``file_id``,
    #: ``download_url`` (Civitai), ``path`` (HF file path); empty without a lock
    pinned: Mapping[str, str] = field(default_factory=dict)
    #: the profile variant this file belongs to (``fp8``, ``gguf-q4``, ...), if any
    variant: str | None = None


@dataclass(frozen=True)
class VariantChoice:
    """Which variant of a profiled repo was chosen, and why (shown by the plan)."""

    repo: str
    variant: str
    reason: str
    origin: str
    #: VRAM the variant is offered on, in GiB
    vram_gib: float
    #: what the diffusion model holds: ``bf16``, ``fp8`` or ``gguf`` (the launch flags follow)
    weights: str
    #: bytes on disk of the variant's files (approximate where a size is)
    size: int
    workflow: str | None = None


def request_key(model: DesiredModel) -> str:
    """What the user asked for, minus origin: a change here means the placed file is outdated."""
    body = model.entry.model_dump(mode="json", exclude={"required"})
    body["folder"] = model.folder
    return json.dumps(body, sort_keys=True)


def hf_selection(model: DesiredModel) -> list[str]:
    """The repo paths or patterns a Hugging Face item stands for."""
    entry = model.entry
    assert isinstance(entry, HFModel)
    if model.pinned.get("path"):
        return [model.pinned["path"]]
    glob_prefix = f"hf:{entry.hf}:"
    if model.id.startswith(glob_prefix):
        return [model.id[len(glob_prefix) :]]
    return list(entry.files or ["*.safetensors"])


@dataclass(frozen=True)
class DesiredNode:
    """A custom node; ``name`` is its folder under ``custom_nodes/``."""

    id: str
    name: str
    spec: NodeSpec
    origin: str
    #: the commit a lock file pinned ``spec.ref`` to
    locked_commit: str | None = None


@dataclass(frozen=True)
class DesiredPackage:
    """An extra Python requirement (PEP 508, normalised text)."""

    id: str
    requirement: str
    origin: str


@dataclass(frozen=True)
class Secrets:
    """Credentials, held in memory only. ``repr`` never shows the values."""

    hf_token: str | None = field(default=None, repr=False)
    civitai_token: str | None = field(default=None, repr=False)
    fb_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DesiredState:
    """Everything a pod should contain, with where each item came from."""

    manifest: Manifest
    models: tuple[DesiredModel, ...] = ()
    nodes: tuple[DesiredNode, ...] = ()
    packages: tuple[DesiredPackage, ...] = ()
    #: origin of each scalar setting that did not come from the defaults, by dotted path
    scalar_origins: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    manifest_path: str | None = None
    #: the variant chosen for each profiled repo with variants
    variants: tuple[VariantChoice, ...] = ()

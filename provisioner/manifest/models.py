"""Manifest format v1 as pydantic models: the single source of ``schemas/manifest.schema.json``.

Every model is frozen and forbids unknown keys; descriptions become the schema's, so editors
complete and check manifests. Cross-field rules that JSON Schema cannot say stay small here.

Built on every start, so kept cheap to build (``benchmarks/bench_plan.py``): annotations are
real objects, not ``from __future__ import annotations`` strings that pydantic would evaluate
one by one, and list fields default to ``[]`` (pydantic copies it per instance) rather than a
``default_factory=list`` whose signature pydantic inspects through the tokenizer.
"""

import re
from typing import Annotated, Literal, Union, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

SHA256_RE = r"^[0-9a-fA-F]{64}$"


def _whole_number(value: object) -> object:
    """JSON Schema counts 8188.0 as an integer; so do we (strict mode would refuse it)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An integer field that, like JSON Schema's ``integer``, accepts a float with no fraction.
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]

#: ComfyUI's model folders (``folder_paths.py``), the only valid ``type`` values.
ModelFolder = Literal[
    "checkpoints",
    "loras",
    "vae",
    "text_encoders",
    "clip",
    "diffusion_models",
    "unet",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
    "latent_upscale_models",
]
MODEL_FOLDERS: tuple[str, ...] = get_args(ModelFolder)

HF_REPO_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$"
SUBDIR_RE = r"^(?!/)(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9_. /-]+$"
FILE_NAME_RE = r"^(?!\.\.?$)[^/\\\x00]+$"
GIT_URL_RE = r"^(https://|ssh://|git@|file://)\S+$"
VARIANT_RE = r"^(auto|bf16|fp16|fp8|nvfp4|gguf-q[2-8])$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, regex_engine="python-re")


class _ModelCommon(_Strict):
    type: ModelFolder | None = Field(
        None,
        description="ComfyUI model folder to place the file(s) in. Default: from the source's "
        "metadata, the known-file table, or the safetensors header.",
    )
    subdir: Annotated[str, Field(pattern=SUBDIR_RE)] | None = Field(
        None, description="Sub-folder under the model folder, e.g. 'flux' → models/loras/flux/."
    )
    sha256: Annotated[str, Field(pattern=SHA256_RE)] | None = Field(
        None, description="Trusted SHA256 (64 hex). Overrides/confirms the source's own hash."
    )
    required: bool = Field(
        False, description="If true, a failure of this model stops ComfyUI from launching."
    )


class HFModel(_ModelCommon):
    """Files from a Hugging Face repository, resolved and verified through huggingface_hub."""

    hf: Annotated[str, Field(pattern=HF_REPO_RE)] = Field(
        ..., description="Repository id 'org/name'.", examples=["black-forest-labs/FLUX.1-dev"]
    )
    revision: str | None = Field(
        None, description="Branch, tag or commit. Default 'main' (pinned by `phoenix lock`)."
    )
    files: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None,
        description="File names or glob patterns to fetch. Default: the repo's profile in "
        "manifests/profiles.yaml, else every *.safetensors file.",
    )
    variant: Annotated[str, Field(pattern=VARIANT_RE)] | None = Field(
        None,
        description="For a repo whose profile has variants (FLUX.2-dev, FLUX.1-Krea-dev, "
        "FLUX.1-Kontext-dev): auto (default) picks the best that fits the GPU's VRAM; or name "
        "one: bf16, fp8, gguf-q5, gguf-q4 (see the README's profile table).",
        examples=["auto", "fp8", "gguf-q4"],
    )

    @model_validator(mode="after")
    def _one_hash_one_file(self) -> "HFModel":
        if self.sha256 and (not self.files or len(self.files) != 1 or is_glob(self.files[0])):
            raise ValueError("'sha256' needs exactly one file name in 'files' (not a pattern)")
        if self.variant is not None and self.files is not None:
            raise ValueError("'variant' picks a profile's files: leave out 'files' to use it")
        return self


class CivitaiModel(_ModelCommon):
    """A model version from Civitai; the API's SHA256 is verified on every download."""

    civitai: Union[WholeNumber, Annotated[str, Field(pattern=r"^\s*\S")]] = Field(  # noqa: UP007 (keeps pydantic's schema order)
        ...,
        description="Model id, 'modelId@versionId', an AIR (urn:air:...:civitai:ID@VER) or a "
        "civitai.com model/download URL.",
        examples=[618692, "618692@691639", "urn:air:flux1:lora:civitai:618692@691639"],
    )
    format: Literal["SafeTensor", "PickleTensor", "GGUF", "Diffusers", "Core ML", "ONNX"] | None = (
        Field(None, description="Pick the file with this format (default: the primary file).")
    )
    fp: Literal["fp8", "fp16", "fp32", "bf16", "nf4"] | None = Field(
        None, description="Pick the file with this precision."
    )
    size: Literal["full", "pruned"] | None = Field(None, description="Pick full or pruned file.")


class URLModel(_ModelCommon):
    """A file from a plain HTTPS URL. ``sha256`` is required: nothing unverified is placed."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] = Field(
        ..., description="http(s) URL of the file."
    )
    sha256: Annotated[str, Field(pattern=SHA256_RE)] = Field(
        ..., description="SHA256 of the file (64 hex). Required for plain URLs."
    )
    name: Annotated[str, Field(pattern=FILE_NAME_RE)] | None = Field(
        None, description="File name to save as. Default: the URL's last path segment."
    )

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        from provisioner.manifest.items import credential_in_url

        found = credential_in_url(value)
        if found:
            raise ValueError(
                f"the URL carries a credential ({found}); Phoenix sends none to plain URLs and "
                "would print and store it: use a public URL, or the hf/civitai source with "
                "its token variable"
            )
        return value


ModelEntry = Union[HFModel, CivitaiModel, URLModel]  # noqa: UP007


class NodeSpec(_Strict):
    """A ComfyUI custom node from a git repository."""

    url: Annotated[str, Field(pattern=GIT_URL_RE)] = Field(
        ..., description="Git URL: https://, ssh://, git@host:owner/repo or file:// ."
    )
    ref: str | None = Field(
        None, description="Commit, tag or branch. Unset or a branch is warned about as unpinned."
    )
    name: Annotated[str, Field(pattern=FILE_NAME_RE)] | None = Field(
        None, description="Folder name under custom_nodes/. Default: the repository name."
    )
    required: bool = Field(False, description="If true, a failure stops ComfyUI from launching.")


class Performance(_Strict):
    """Performance choices; ``auto`` lets Phoenix choose from the GPU's facts."""

    attention: Literal["auto", "flash", "sdpa", "sage", "xformers", "split", "quad"] = Field(
        "auto", description="Attention implementation. auto: FlashAttention if usable, else SDPA."
    )
    unet_dtype: Literal["auto", "bf16", "fp16", "fp8_e4m3fn", "fp8_e5m2", "fp32"] = Field(
        "auto", description="Diffusion model weight dtype. auto: bf16 where supported."
    )
    vram: Literal["auto", "gpu-only", "high", "normal", "low", "none", "cpu"] = Field(
        "auto", description="VRAM management mode. auto: chosen from the GPU's VRAM."
    )


class ComfyUIConfig(_Strict):
    """The ComfyUI checkout Phoenix launches and how."""

    repo: Annotated[str, Field(pattern=GIT_URL_RE)] | None = Field(
        None, description="Git URL. Default: COMFYUI_REPO in versions.conf."
    )
    ref: str | None = Field(None, description="Commit or tag. Default: COMFYUI_COMMIT.")
    path: str = Field(
        "/opt/ComfyUI",
        min_length=1,
        description="Where the checkout lives (the image's copy).",
    )
    listen: str = Field(
        "0.0.0.0",
        pattern=r"^[A-Za-z0-9:.,%\[\]-]+$",
        description="Address(es) ComfyUI listens on: an IP, a host name, or a comma list.",
    )
    port: WholeNumber = Field(8188, ge=1, le=65535, description="ComfyUI's HTTP port.")
    args: list[str] = Field(default=[], description="Extra ComfyUI arguments, appended last.")
    performance: Performance = Field(default_factory=Performance)
    required: bool = Field(True, description="ComfyUI failing to install stops the launch.")


class Storage(_Strict):
    """Where the workspace lives and how much room it needs."""

    mode: Literal["auto", "ephemeral", "volume"] = Field(
        "auto",
        description="auto: a mounted /workspace or /runpod-volume is a volume; else ephemeral.",
    )
    root: str = Field("/workspace", description="Workspace root (models, nodes, outputs).")
    min_free_gb: WholeNumber = Field(
        150, ge=0, description="Recommended free space in GB; less is a warning."
    )


class FileBrowser(_Strict):
    """FileBrowser on the workspace. Its password comes from FB_PASSWORD or is generated."""

    enabled: bool = Field(True, description="Run FileBrowser.")
    port: WholeNumber = Field(8080, ge=1, le=65535, description="FileBrowser's HTTP port.")
    username: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.@-]+$")] = Field(
        "admin", description="FileBrowser user name."
    )


class Health(_Strict):
    """Phoenix's health API."""

    enabled: bool = Field(True, description="Serve /healthz, /readyz and /status.")
    port: WholeNumber = Field(8189, ge=1, le=65535, description="Health API port.")


class Services(_Strict):
    """Services Phoenix supervises next to ComfyUI."""

    filebrowser: FileBrowser = Field(default_factory=FileBrowser)
    health: Health = Field(default_factory=Health)


class Security(_Strict):
    """Hardening and cleanup."""

    paranoid: bool = Field(
        False, description="Forensic cleanup on exit: overwrite and remove inputs, outputs, logs."
    )
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]*$")] = Field(
        "sduser", description="Non-root user the services run as."
    )


class Downloads(_Strict):
    """How Phoenix's own engine fetches model files (Civitai and plain URLs)."""

    connections: WholeNumber = Field(
        8,
        ge=1,
        le=16,
        description="Connections for one file of 64 MiB or more from a server that supports "
        "ranges (1: one stream). At most 16 per host over all downloads.",
    )


class Manifest(_Strict):
    """Phoenix manifest v1: the desired state of a pod."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        regex_engine="python-re",
        title="Phoenix manifest",
        json_schema_extra={"$id": "https://phoenix.invalid/schemas/manifest.schema.json"},
    )

    version: Literal[1] = Field(1, description="Manifest format version.")

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_a_number(cls, value: object) -> object:
        # True == 1 in Python; JSON Schema's const tells booleans from numbers, and so do we.
        if isinstance(value, bool):
            raise ValueError("expected the number 1, found a boolean")
        return _whole_number(value)

    debug: bool = Field(False, description="Verbose logging.")
    storage: Storage = Field(default_factory=Storage)
    comfyui: ComfyUIConfig = Field(default_factory=ComfyUIConfig)
    models: list[ModelEntry] = Field(default=[], description="Models to place.")
    nodes: list[NodeSpec] = Field(default=[], description="Custom nodes to install.")
    packages: list[Annotated[str, Field(min_length=1)]] = Field(
        default=[], description="Extra Python requirements (PEP 508)."
    )
    services: Services = Field(default_factory=Services)
    security: Security = Field(default_factory=Security)
    downloads: Downloads = Field(default_factory=Downloads)


_GLOB = re.compile(r"[*?\[]")


def is_glob(pattern: str) -> bool:
    """True when ``pattern`` is a glob rather than one literal file name."""
    return bool(_GLOB.search(pattern))

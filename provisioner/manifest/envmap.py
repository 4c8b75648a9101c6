"""The environment variable table, as data.

``phoenix env``, the README's Basic/Advanced tables and the RunPod template are all generated
from :data:`ENV_VARS`, so they cannot drift from what Phoenix actually reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal[
    "bool",
    "int",
    "str",
    "secret",
    "path",
    "url",
    "hf-list",
    "civitai-list",
    "node-list",
    "package-list",
]
Tier = Literal["Basic", "Advanced"]


@dataclass(frozen=True)
class EnvVar:
    """One variable Phoenix reads."""

    name: str
    kind: Kind
    default: str | None
    manifest_path: str | None
    tier: Tier
    secret: bool
    help: str
    #: for Civitai lists: the ComfyUI folder their items go to
    folder: str | None = None
    #: another variable this one is an alias of
    alias_of: str | None = None


ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar(
        "HUGGINGFACE_TOKEN",
        "secret",
        None,
        None,
        "Basic",
        True,
        "Hugging Face token; needed for gated repos such as FLUX.1-dev (accept the license on "
        "the repo page first). Held in memory only.",
    ),
    EnvVar(
        "HF_TOKEN",
        "secret",
        None,
        None,
        "Advanced",
        True,
        "Alias of HUGGINGFACE_TOKEN (used when that one is unset).",
        alias_of="HUGGINGFACE_TOKEN",
    ),
    EnvVar(
        "CIVITAI_TOKEN",
        "secret",
        None,
        None,
        "Basic",
        True,
        "Civitai API token; sent only to the Civitai API host as a header, never in a URL.",
    ),
    EnvVar(
        "HF_REPOS_TO_DOWNLOAD",
        "hf-list",
        "black-forest-labs/FLUX.1-dev",
        "models",
        "Basic",
        False,
        "Hugging Face repos/files: org/repo, org/repo@rev, org/repo:file-or-glob, or a "
        "/resolve/ URL. The default applies only when no manifest lists models; set it empty "
        "to download nothing from Hugging Face.",
    ),
    EnvVar(
        "CIVITAI_CHECKPOINTS_TO_DOWNLOAD",
        "civitai-list",
        None,
        "models",
        "Basic",
        False,
        "Civitai checkpoints: id, id@versionId, AIR URN or civitai.com URL.",
        folder="checkpoints",
    ),
    EnvVar(
        "CIVITAI_LORAS_TO_DOWNLOAD",
        "civitai-list",
        None,
        "models",
        "Basic",
        False,
        "Civitai LoRAs: id, id@versionId, AIR URN or civitai.com URL.",
        folder="loras",
    ),
    EnvVar(
        "CIVITAI_VAES_TO_DOWNLOAD",
        "civitai-list",
        None,
        "models",
        "Advanced",
        False,
        "Civitai VAEs: id, id@versionId, AIR URN or civitai.com URL.",
        folder="vae",
    ),
    EnvVar(
        "COMFY_CUSTOM_NODE_GIT_URLS",
        "node-list",
        None,
        "nodes",
        "Advanced",
        False,
        "Custom node git URLs, optionally pinned: https://github.com/owner/repo@TAG or @COMMIT.",
    ),
    EnvVar(
        "EXTRA_PYTHON_PACKAGES",
        "package-list",
        None,
        "packages",
        "Advanced",
        False,
        "Extra PEP 508 requirements (numpy>=1.26,<2 keeps its comma). Installed without ever "
        "replacing the image's torch/CUDA stack.",
    ),
    EnvVar(
        "FB_USERNAME",
        "str",
        "admin",
        "services.filebrowser.username",
        "Advanced",
        False,
        "FileBrowser user name.",
    ),
    EnvVar(
        "FB_PASSWORD",
        "secret",
        None,
        None,
        "Basic",
        True,
        "FileBrowser password; when empty a random 28-character one is generated and shown "
        "once on the console (never written to a log or file).",
    ),
    EnvVar(
        "USE_VOLUME",
        "bool",
        None,
        "storage.mode",
        "Advanced",
        False,
        "true: use the persistent volume; false: ephemeral storage. Unset (the default): "
        "auto-detect a mounted /workspace or /runpod-volume.",
    ),
    EnvVar(
        "PARANOID_MODE",
        "bool",
        "false",
        "security.paranoid",
        "Advanced",
        False,
        "On exit, overwrite and remove inputs, outputs, logs and caches of an ephemeral workspace.",
    ),
    EnvVar(
        "DEBUG_MODE",
        "bool",
        "false",
        "debug",
        "Advanced",
        False,
        "Verbose logging and tracebacks for internal errors (secrets stay redacted).",
    ),
    EnvVar(
        "PHOENIX_MANIFEST",
        "path",
        None,
        None,
        "Advanced",
        False,
        "Path of a mounted manifest.yaml (same as --manifest).",
    ),
    EnvVar(
        "PHOENIX_ROOT",
        "path",
        "/workspace",
        "storage.root",
        "Advanced",
        False,
        "Workspace root: models, custom nodes, inputs, outputs (same as --root).",
    ),
    EnvVar(
        "PHOENIX_BASE_PYTHON",
        "path",
        None,
        None,
        "Advanced",
        False,
        "Interpreter the workspace venv is created over (default: the Python running Phoenix; "
        "in the image, the NGC Python with its CUDA torch).",
    ),
    EnvVar(
        "PHOENIX_INSTALLER",
        "str",
        "auto",
        None,
        "Advanced",
        False,
        "Package installer: auto (uv when it supports --excludes, else pip), uv or pip.",
    ),
    EnvVar(
        "PHOENIX_STOP_GRACE",
        "str",
        "10",
        None,
        "Advanced",
        False,
        "Seconds the container gets to stop (docker stop -t / RunPod's grace period); "
        "stopping services and cleanup are time-boxed to fit.",
    ),
    EnvVar(
        "PHOENIX_HEALTH_PORT",
        "str",
        "8189",
        None,
        "Advanced",
        False,
        "Port `phoenix status` asks for /status (the health API's port is services.health.port).",
    ),
    EnvVar(
        "PHOENIX_DOWNLOAD_CONNECTIONS",
        "int",
        "8",
        "downloads.connections",
        "Advanced",
        False,
        "Connections for one model file of 64 MiB or more (Civitai, URLs) when the server "
        "supports ranges; 1 = one stream. 1 to 16.",
    ),
    EnvVar(
        "PHOENIX_VRAM_GIB",
        "str",
        None,
        None,
        "Advanced",
        False,
        "GPU VRAM in GiB that picks profile variants (same as --vram-gib), e.g. 32 to plan "
        "for an RTX 5090 on a runner without a GPU; default: the GPU's own figure at apply.",
    ),
    EnvVar(
        "PHOENIX_HOME",
        "path",
        None,
        None,
        "Advanced",
        False,
        "Where manifests/, schemas/ and config/ live when Phoenix is installed unusually "
        "(default: beside the package).",
    ),
    EnvVar(
        "PHOENIX_IN_IMAGE",
        "bool",
        None,
        None,
        "Advanced",
        False,
        "Set to 1 by the Phoenix image: `phoenix cleanup` then also cleans home-level files "
        "(pip/uv caches, the Hugging Face token file, shell histories). Elsewhere it only "
        "cleans the workspace unless given --include-home.",
    ),
    EnvVar(
        "CIVITAI_API_BASE",
        "url",
        "https://civitai.com",
        None,
        "Advanced",
        False,
        "Civitai API base URL (proxies, mirrors, tests).",
    ),
    EnvVar(
        "HF_ENDPOINT",
        "url",
        "https://huggingface.co",
        None,
        "Advanced",
        False,
        "Hugging Face endpoint (mirrors, tests); read by huggingface_hub.",
    ),
)

BY_NAME: dict[str, EnvVar] = {v.name: v for v in ENV_VARS}

#: Credentials of other programs that may sit in a pod's environment: never passed to a child.
FOREIGN_SECRETS: tuple[str, ...] = ("HUGGING_FACE_HUB_TOKEN", "RUNPOD_API_KEY")

#: Every secret variable name: the table's ``secret`` column, then :data:`FOREIGN_SECRETS`.
#: ``provisioner.software.proc`` and ``provisioner.runtime.system`` both use this one list.
SECRET_NAMES: tuple[str, ...] = tuple(v.name for v in ENV_VARS if v.secret) + FOREIGN_SECRETS

#: The 13 template variables of REQUIREMENTS.md (the seed set).
SEED_VARIABLES = (
    "DEBUG_MODE",
    "HUGGINGFACE_TOKEN",
    "CIVITAI_TOKEN",
    "HF_REPOS_TO_DOWNLOAD",
    "CIVITAI_CHECKPOINTS_TO_DOWNLOAD",
    "CIVITAI_LORAS_TO_DOWNLOAD",
    "CIVITAI_VAES_TO_DOWNLOAD",
    "EXTRA_PYTHON_PACKAGES",
    "FB_USERNAME",
    "FB_PASSWORD",
    "USE_VOLUME",
    "PARANOID_MODE",
    "COMFY_CUSTOM_NODE_GIT_URLS",
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(value: str) -> bool:
    """Parse a boolean env value; raises ``ValueError`` with the accepted spellings."""
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected true/false (also 1/0, yes/no, on/off)")


def flag_or_none(value: str | None) -> bool | None:
    """Lenient boolean for paths that must not fail (shutdown): unset or unreadable → None."""
    try:
        return parse_bool(value) if value and value.strip() else None
    except ValueError:
        return None


def split_list(value: str) -> list[str]:
    """Split a list variable on commas, whitespace and newlines; empty items are dropped."""
    return [part for part in value.replace(",", " ").split() if part]

"""The RunPod pod template, generated from the env var table and ``config/versions.conf``.

``runpod/template.json`` is this module's output (``phoenix template``), committed; a test
regenerates it and fails when it drifts. Its top-level fields are those of RunPod's
``saveTemplate`` input (name, imageName, containerDiskInGb, volumeInGb, volumeMountPath,
ports, env, readme). Each ``env`` entry carries ``key`` and ``value`` as RunPod expects, plus
``description`` and ``secret`` for the person filling in the form; ``phoenix template --api``
drops those two so the output can be posted to the API as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from provisioner import __version__
from provisioner.core.config import Versions
from provisioner.generate.profiles_table import variant_summary
from provisioner.manifest.envmap import EnvVar
from provisioner.manifest.profiles import Profiles, load_profile_file

TEMPLATE_NAME = "Phoenix: ComfyUI + FLUX (RTX 5090 ready)"
CONTAINER_DISK_GB = 150
VOLUME_MOUNT_PATH = "/workspace"
PORTS = "8188/http,8080/http,8189/http"


def default_image() -> str:
    """The tag ``docker build -t phoenix:<version> .`` gives; replace it with your registry's."""
    return f"phoenix:{__version__}"


def template_env(env_vars: Iterable[EnvVar]) -> list[dict[str, Any]]:
    """One entry per variable, Basic tier first. Aliases are left out (the variable they alias
    is listed); secrets never carry a value."""
    chosen = [v for v in env_vars if v.alias_of is None]
    ordered = [v for v in chosen if v.tier == "Basic"] + [v for v in chosen if v.tier != "Basic"]
    return [
        {
            "key": v.name,
            "value": "" if v.secret or v.default is None else v.default,
            "description": f"[{v.tier}] {v.help}",
            "secret": v.secret,
        }
        for v in ordered
    ]


def _readme(env_vars: Iterable[EnvVar], versions: Versions, profiles: Profiles) -> str:
    rows = []
    for entry in template_env(env_vars):
        default = f"`{entry['value']}`" if entry["value"] else "-"
        name = f"`{entry['key']}`" + (" (secret)" if entry["secret"] else "")
        rows.append(f"| {name} | {default} | {entry['description']} |")
    return "\n".join(
        [
            f"# {TEMPLATE_NAME}",
            "",
            "ComfyUI with the FLUX.1-dev model set, provisioned by Phoenix from these variables "
            "(or a mounted manifest: set `PHOENIX_MANIFEST`).",
            "",
            "**VRAM and storage:** FLUX.1-dev in bf16 is about 24 GB of weights plus about 10 GB "
            f"of text encoders and VAE. Keep at least {CONTAINER_DISK_GB} GB of container disk. "
            "The RTX 5090 (32 GB) runs bf16; on 24 GB cards an fp8 manifest avoids offloading.",
            "",
            "**Larger models** (`HF_REPOS_TO_DOWNLOAD=<repo>`): Phoenix picks the first variant "
            "whose VRAM fits the GPU (`variant: auto`; set `PHOENIX_VRAM_GIB` to plan for "
            "another card) and stops before any download when none fits. Disk size, and the VRAM "
            "each variant is offered from:",
            "",
            *(f"- {line}" for line in variant_summary(profiles)),
            "",
            "**Ports:** 8188 ComfyUI, 8080 FileBrowser, 8189 Phoenix health (`/healthz`).",
            "",
            f"**Pinned:** ComfyUI {versions['COMFYUI_VERSION']} "
            f"(`{versions.comfyui_commit[:12]}`), NGC PyTorch {versions['NGC_PYTORCH_TAG']}, "
            f"FileBrowser {versions['FILEBROWSER_VERSION']}. Needs an NVIDIA driver >= 570.",
            "",
            "Secrets (marked below) are read once, held in memory and never logged; prefer "
            "RunPod secrets (`{{ RUNPOD_SECRET_name }}`) as their values.",
            "",
            "| Variable | Default | Description |",
            "| --- | --- | --- |",
            *rows,
            "",
        ]
    )


def render_template(
    env_vars: Iterable[EnvVar],
    versions: Versions,
    image: str | None = None,
    profiles: Profiles | None = None,
) -> dict[str, Any]:
    """The RunPod template as a JSON-ready dict (stable key order); ``profiles`` defaults to
    manifests/profiles.yaml."""
    env_list = list(env_vars)
    return {
        "name": TEMPLATE_NAME,
        "imageName": image or default_image(),
        "containerDiskInGb": CONTAINER_DISK_GB,
        "volumeInGb": 0,
        "volumeMountPath": VOLUME_MOUNT_PATH,
        "ports": PORTS,
        "env": template_env(env_list),
        "readme": _readme(env_list, versions, profiles or load_profile_file()),
    }


def api_input(template: dict[str, Any]) -> dict[str, Any]:
    """The template reduced to RunPod's ``saveTemplate`` input: env entries are key/value."""
    reduced = dict(template)
    reduced["env"] = [{"key": e["key"], "value": e["value"]} for e in template["env"]]
    return reduced

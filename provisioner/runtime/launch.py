"""What ``phoenix run`` launches: ComfyUI's service and arguments (directory options for the
workspace, the chosen flags and the user's ``comfyui.args``, each checked against the checkout's
``comfy/cli_args.py``), and FileBrowser's service when it is enabled."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from provisioner.core.layout import Layout
from provisioner.core.redact import register_secret
from provisioner.manifest.models import MODEL_FOLDERS, ComfyUIConfig, Manifest
from provisioner.runtime import filebrowser
from provisioner.runtime.cliargs import CliSpec, filter_args
from provisioner.runtime.flags import FlagChoice, InstalledFeatures, choose_flags
from provisioner.runtime.gpu import GpuFacts
from provisioner.runtime.health import StatusBoard
from provisioner.runtime.services import RestartPolicy, ServiceSpec

log = logging.getLogger("phoenix.run")


def directory_args(layout: Layout, spec: CliSpec | None) -> tuple[list[str], str | None]:
    """Point ComfyUI at the workspace: ``--base-directory``, or older per-folder options.

    Returns the args and, for checkouts without ``--base-directory``, the text of an
    ``extra_model_paths.yaml`` that maps the models and custom nodes folders.
    """
    if spec is None or "--base-directory" in spec:
        return ["--base-directory", str(layout.root)], None
    args: list[str] = []
    for option, path in (
        ("--output-directory", layout.output),
        ("--input-directory", layout.input),
        ("--user-directory", layout.user),
    ):
        if option in spec:
            args += [option, str(path)]
    lines = ["phoenix:", f"  base_path: {layout.root}"]
    lines += [f"  {folder}: models/{folder}" for folder in MODEL_FOLDERS]
    lines.append("  custom_nodes: custom_nodes")
    return args, "\n".join(lines) + "\n"

@dataclass(frozen=True)
class LaunchArgs:
    """ComfyUI's final arguments, the flag choice behind them, and what was dropped."""

    choice: FlagChoice
    args: tuple[str, ...]
    dropped: tuple[str, ...]
    warnings: tuple[str, ...]
    extra_paths_yaml: str | None = None


def launch_args(
    gpu: GpuFacts | None,
    features: InstalledFeatures,
    comfy: ComfyUIConfig,
    layout: Layout,
    spec: CliSpec | None,
    extra_paths_file: Path,
    weights: str | None = None,
) -> LaunchArgs:
    """Directory args + chosen flags + user args, checked against the checkout's ``cli_args.py``.

    ``weights`` (from the chosen profile variants) reaches :func:`choose_flags`.

    The user's ``comfyui.args`` are checked first, so a flag this checkout does not know (say
    ``--normalvram``) is dropped *before* it could stop Phoenix choosing that flag family.
    """
    dropped: list[str] = []
    warnings: list[str] = []
    if spec is not None:
        user = filter_args(comfy.args, spec)
        dropped += user.dropped
        warnings += user.warnings
        comfy = comfy.model_copy(update={"args": list(user.args)})
    else:
        warnings.append(f"cannot read {comfy.path}/comfy/cli_args.py: flags are not checked")
    choice = choose_flags(gpu, comfy.performance, features, comfy, weights)
    warnings += choice.warnings
    dir_args, extra_yaml = directory_args(layout, spec)
    if extra_yaml is not None:
        dir_args += ["--extra-model-paths-config", str(extra_paths_file)]
    args = [*dir_args, *choice.args]
    if spec is not None:
        final = filter_args(args, spec)
        dropped += final.dropped
        warnings += final.warnings
        args = list(final.args)
    return LaunchArgs(choice, tuple(args), tuple(dropped), tuple(warnings), extra_yaml)


def comfyui_service(
    python: str,
    checkout: Path,
    args: list[str],
    env: dict[str, str],
    port: int,
    restart: RestartPolicy,
    stop_timeout: float,
) -> ServiceSpec:
    """ComfyUI's service: ``main.py`` of the checkout with ``args``, ready when its API answers."""
    return ServiceSpec(
        name="comfyui",
        argv=(python, str(checkout / "main.py"), *args),
        env=env,
        cwd=str(checkout),
        probe_url=f"http://127.0.0.1:{port}/system_stats",
        restart=restart,
        stop_timeout=stop_timeout,
    )


def filebrowser_service(
    binary_override: str | None,
    manifest: Manifest,
    layout: Layout,
    password: str | None,
    environ: MutableMapping[str, str],
    board: StatusBoard,
    console: IO[str],
) -> tuple[ServiceSpec | None, str | None]:
    """FileBrowser's service spec and version, or ``(None, None)`` when off or missing."""
    config = manifest.services.filebrowser
    if not config.enabled:
        return None, None
    binary = binary_override or filebrowser.find_binary()
    if binary is None:
        message = "FileBrowser is enabled but its binary is not on PATH: skipped"
        log.warning("%s", message)
        board.warn(message)
        return None, None
    creds = filebrowser.credentials(config.username, password)
    register_secret(creds.password)
    spec = filebrowser.filebrowser_service(
        binary, config, layout.root, layout.phoenix / "run", creds, environ
    )
    if creds.generated:
        # shown once, on the console only; it is registered, so every log line masks it
        console.write(
            f"phoenix: FileBrowser login: {creds.username} / {creds.password}\n"
            "phoenix: (generated; set FB_PASSWORD to choose your own; not shown again)\n"
        )
        console.flush()
    return spec, filebrowser.binary_version(binary)

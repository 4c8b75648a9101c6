"""Bake mode: ``phoenix apply --locked`` at image build time, then offline at run time.

docker/Dockerfile.bake runs ``phoenix lock``'s lock file through ``apply --locked`` into a root
outside /workspace; the image's layer tars keep mtimes only to the second (buildah 1.28; see
``same_file`` in provisioner/state/store.py). At run time the same command, offline and with
every endpoint pointing at a closed port, must find the root converged and send no request.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.support.civitai import LoopbackHub, add_style_lora
from tests.support.cli import clean_env, run_phoenix
from tests.support.desired import with_comfyui
from tests.support.hub import FluxHub
from tests.support.paths import REPO
from tests.support.servers import free_port

MANIFEST = "models:\n  - hf: black-forest-labs/FLUX.1-dev\n  - civitai: 618692\n"


def _truncate_mtimes(root: Path) -> int:
    """Drop the sub-second part of every mtime, as an image layer tar does; returns a count."""
    touched = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            whole = st.st_mtime_ns - st.st_mtime_ns % 1_000_000_000
            if whole != st.st_mtime_ns:
                os.utime(path, ns=(whole, whole))
                touched += 1
    return touched


def _bake(flux_hub: FluxHub, civitai: LoopbackHub, tmp_path: Path) -> tuple[Path, Path]:
    add_style_lora(civitai)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(with_comfyui(MANIFEST))
    build = _online(flux_hub, civitai)
    assert run_phoenix("lock", "--manifest", str(manifest), env=build).returncode == 0
    baked = tmp_path / "opt" / "baked"
    result = run_phoenix(
        "apply", "--locked", "--manifest", str(manifest), "--root", str(baked), env=build
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (baked / "models/loras/style.safetensors").is_file()
    assert (baked / "models/diffusion_models/flux1-dev.safetensors").is_file()
    return manifest, baked


def _online(flux_hub: FluxHub, civitai: LoopbackHub) -> dict[str, str]:
    return clean_env(
        HF_ENDPOINT=flux_hub.endpoint, CIVITAI_API_BASE=civitai.api_base, PYTHONPATH=str(REPO)
    )


def _offline(root: Path) -> dict[str, str]:
    dead = f"http://127.0.0.1:{free_port()}"
    return clean_env(
        PHOENIX_ROOT=str(root), HF_HUB_OFFLINE="1", HF_ENDPOINT=dead, CIVITAI_API_BASE=dead,
        PYTHONPATH=str(REPO),
    )  # fmt: skip


def test_a_baked_root_is_converged_offline_even_with_mtimes_cut_to_seconds(
    flux_hub: FluxHub, civitai: LoopbackHub, tmp_path: Path
) -> None:
    flux_hub.proxy.reset()
    manifest, baked = _bake(flux_hub, civitai, tmp_path)
    # what the image holds: a copy of the root whose mtimes lost their sub-second part
    image_root = tmp_path / "image" / "opt" / "baked"
    shutil.copytree(baked, image_root, symlinks=True)
    assert _truncate_mtimes(image_root) > 0
    flux_hub.proxy.reset()
    civitai.reset()
    env = _offline(image_root)
    plan = run_phoenix("plan", "--manifest", str(manifest), "--detailed-exitcode", env=env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    apply = run_phoenix("apply", "--locked", "--manifest", str(manifest), env=env)
    assert apply.returncode == 0, apply.stdout + apply.stderr
    assert "apply: 0 done, 0 failed, 0 change(s) still pending" in apply.stdout
    assert flux_hub.proxy.requests == []
    assert civitai.records == []


def test_an_edit_to_a_baked_file_is_still_caught_offline(
    flux_hub: FluxHub, civitai: LoopbackHub, tmp_path: Path
) -> None:
    flux_hub.proxy.reset()
    manifest, baked = _bake(flux_hub, civitai, tmp_path)
    _truncate_mtimes(baked)
    lora = baked / "models/loras/style.safetensors"
    st = lora.stat()
    data = bytearray(lora.read_bytes())
    data[-1] ^= 0xFF
    lora.write_bytes(bytes(data))
    # same size, a whole-second mtime, but not the recorded one truncated: drift
    later = st.st_mtime_ns + 3_000_000_000
    os.utime(lora, ns=(later, later))
    plan = run_phoenix(
        "plan", "--manifest", str(manifest), "--detailed-exitcode", env=_offline(baked)
    )
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "changed on disk since placed" in plan.stdout + plan.stderr

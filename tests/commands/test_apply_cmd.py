"""`phoenix apply` / `phoenix lock` as real processes against real servers on loopback.

Acceptance: files placed with matching SHA256 and a silent rerun; ``kill -9`` mid-download never
leaves a partial file in models/ and the rerun completes; two concurrent applies on one root
fetch each file once; planted tokens appear in no output, state, lock, plan or file.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.civitai import LoopbackHub, add_style_lora
from tests.support.cli import clean_env, run_phoenix
from tests.support.desired import with_comfyui
from tests.support.hub import GATED_TOKEN, FluxHub
from tests.support.paths import REPO

FLUX = "black-forest-labs/FLUX.1-dev"
ENC = "comfyanonymous/flux_text_encoders"
FLUX_SET = "version: 1\nmodels:\n  - hf: black-forest-labs/FLUX.1-dev\n"

PLACED = {
    "models/diffusion_models/flux1-dev.safetensors": (FLUX, "flux1-dev.safetensors"),
    "models/vae/ae.safetensors": (FLUX, "ae.safetensors"),
    "models/text_encoders/clip_l.safetensors": (ENC, "clip_l.safetensors"),
    "models/text_encoders/t5xxl_fp16.safetensors": (ENC, "t5xxl_fp16.safetensors"),
}


@pytest.fixture
def hub(flux_hub: FluxHub) -> Iterator[FluxHub]:
    """The session's hub (tests/conftest.py), its request log cleared and no slow files left."""
    flux_hub.proxy.reset()
    yield flux_hub
    flux_hub.proxy.slow.clear()


def _env(hub: FluxHub, **extra: str) -> dict[str, str]:
    # PYTHONPATH: this checkout's provisioner, whatever the child's working directory
    return clean_env(HF_ENDPOINT=hub.endpoint, PYTHONPATH=str(REPO), **extra)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _popen_apply(manifest: Path, root: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "provisioner", "apply", "--manifest", str(manifest),
         "--root", str(root)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _gets(hub: FluxHub, name: str) -> int:
    return sum(1 for r in hub.proxy.requests if r.method == "GET" and r.path.endswith(f"/{name}"))


def test_apply_places_verified_files_and_a_rerun_makes_no_request(
    hub: FluxHub, tmp_path: Path
) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(with_comfyui(FLUX_SET))
    root = tmp_path / "root"
    first = run_phoenix("apply", "--manifest", str(manifest), "--root", str(root), env=_env(hub))
    assert first.returncode == 0, first.stderr
    for rel, (repo, name) in PLACED.items():
        assert _sha(root / rel) == hub.sha(repo, name)
    assert "0 failed, 0 change(s) still pending" in first.stdout

    hub.proxy.reset()
    second = run_phoenix("apply", "--manifest", str(manifest), "--root", str(root), env=_env(hub))
    assert second.returncode == 0, second.stderr
    assert "apply: 0 done, 0 failed, 0 change(s) still pending" in second.stdout
    assert hub.proxy.requests == []
    plan = run_phoenix(
        "plan", "--manifest", str(manifest), "--root", str(root), "--detailed-exitcode",
        env=_env(hub),
    )  # fmt: skip
    assert plan.returncode == 0, plan.stdout + plan.stderr


def test_gated_repo_exits_1_naming_the_license_page(hub: FluxHub, tmp_path: Path) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(with_comfyui(
        "models:\n  - hf: gated-org/gated-model\n    files: [model.safetensors]\n"
        "  - hf: comfyanonymous/flux_text_encoders\n    files: [clip_l.safetensors]\n"
    ))
    root = tmp_path / "root"
    result = run_phoenix("apply", "--manifest", str(manifest), "--root", str(root), env=_env(hub))
    assert result.returncode == 1
    gated = "hf:gated-org/gated-model/model.safetensors"
    assert f"FAIL model    {gated} [{manifest}:2:5]" in result.stdout  # where it was asked for
    assert "https://huggingface.co/gated-org/gated-model" in result.stdout
    assert (root / "models/text_encoders/clip_l.safetensors").exists()
    assert "Traceback" not in result.stderr


def test_kill_9_mid_download_never_exposes_a_partial_file(hub: FluxHub, tmp_path: Path) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(with_comfyui("models:\n  - hf: black-forest-labs/FLUX.1-dev\n"
                                     "    files: [flux1-dev.safetensors]\n"))  # fmt: skip
    root = tmp_path / "root"
    dest = root / "models/diffusion_models/flux1-dev.safetensors"
    hub.proxy.slow["flux1-dev.safetensors"] = 20.0
    proc = _popen_apply(manifest, root, _env(hub))
    deadline = time.monotonic() + 60
    try:
        while _gets(hub, "flux1-dev.safetensors") == 0:  # the body is now trickling in
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "download never started"
            time.sleep(0.05)
        until = time.monotonic() + 2.0
        while time.monotonic() < until:
            assert not dest.exists(), "a file appeared where ComfyUI looks before it was complete"
            time.sleep(0.02)
        assert proc.poll() is None
        assert list((root / ".phoenix/staging").rglob("*.incomplete"))
    finally:
        proc.kill()  # SIGKILL: no cleanup handler runs
        proc.communicate()
    assert proc.returncode == -9
    assert not dest.exists()
    assert not list((root / "models").rglob("*.safetensors"))

    hub.proxy.slow.clear()
    rerun = run_phoenix("apply", "--manifest", str(manifest), "--root", str(root), env=_env(hub))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _sha(dest) == hub.sha(FLUX, "flux1-dev.safetensors")
    assert [p for p in (root / ".phoenix/staging").rglob("*") if p.is_file()] == []


def test_concurrent_applies_on_one_root_fetch_each_file_once(
    hub: FluxHub, tmp_path: Path
) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(with_comfyui(FLUX_SET))
    root = tmp_path / "root"
    hub.proxy.slow["flux1-dev.safetensors"] = 4.0
    env = _env(hub)
    first = _popen_apply(manifest, root, env)
    # Start the second only once the first holds the volume lock and is mid-download, so the
    # test does not depend on which process the scheduler starts first on a loaded machine.
    deadline = time.monotonic() + 60
    while _gets(hub, "flux1-dev.safetensors") == 0 and first.poll() is None:
        assert time.monotonic() < deadline, "the first apply never started its download"
        time.sleep(0.05)
    second = _popen_apply(manifest, root, env)
    out1, err1 = first.communicate(timeout=120)
    out2, err2 = second.communicate(timeout=120)
    assert (first.returncode, second.returncode) == (0, 0), err1 + err2
    for rel, (repo, name) in PLACED.items():
        assert _sha(root / rel) == hub.sha(repo, name)
        assert _gets(hub, name) == 1, name
    waited = [e for e in (err1, err2) if "waiting for another phoenix apply on this volume" in e]
    assert len(waited) == 1
    assert f"(pid {first.pid} on host" in waited[0] or f"(pid {second.pid} on host" in waited[0]
    assert "0 done, 0 failed" in (out1 if waited[0] is err1 else out2)


def test_planted_tokens_never_appear_anywhere(
    hub: FluxHub, civitai: LoopbackHub, tmp_path: Path
) -> None:
    civitai_token = "civitai_planted_Qw3rty_secret"
    fb_password = "fb_planted_pass_Zx9"
    civitai.required_token = civitai_token
    add_style_lora(civitai)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(with_comfyui(
        "models:\n  - hf: gated-org/gated-model\n    files: [model.safetensors]\n"
        "  - civitai: 618692\n"
    ))
    root = tmp_path / "root"
    env = _env(hub, HF_TOKEN=GATED_TOKEN, CIVITAI_TOKEN=civitai_token, FB_PASSWORD=fb_password,
               CIVITAI_API_BASE=civitai.api_base, DEBUG_MODE="true")  # fmt: skip
    outputs = []
    for args in (
        ("lock", "--manifest", str(manifest)),
        ("plan", "--manifest", str(manifest), "--root", str(root)),
        ("apply", "--manifest", str(manifest), "--root", str(root), "--locked"),
        ("plan", "--manifest", str(manifest), "--root", str(root), "--format", "json"),
        ("apply", "--manifest", str(manifest), "--root", str(root), "--verify"),
    ):
        result = run_phoenix(*args, env=env, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        outputs.append(result.stdout + result.stderr)
    assert json.loads(outputs[3])["summary"]
    lock = json.loads((tmp_path / "pod.lock.json").read_text())
    assert set(lock["models"]) == {"hf:gated-org/gated-model/model.safetensors",
                                   "civitai:618692"}  # fmt: skip
    assert (root / "models/loras/style.safetensors").exists()
    assert (root / "models/diffusion_models/model.safetensors").exists()
    secrets = [GATED_TOKEN, civitai_token, fb_password]
    for text in outputs:
        for secret in secrets:
            assert secret not in text
    for path in [*root.rglob("*"), tmp_path / "pod.lock.json"]:
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, path
    # the tokens went where they belong, and only there
    assert f"Bearer {GATED_TOKEN}" in {r.authorization for r in hub.proxy.requests}
    assert all(GATED_TOKEN not in r.path for r in hub.proxy.requests)
    for rec in civitai.records:
        assert (rec.headers.get("Authorization") is not None) == (rec.server == "api")
        assert civitai_token not in rec.path

"""``phoenix plan``: offline, read-only, exit codes, provenance, redaction, no-op detection."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest

from provisioner.core.config import load_versions
from provisioner.core.layout import Layout
from provisioner.core.resources import schemas_dir
from provisioner.manifest.desired import request_key
from provisioner.manifest.merge import load_desired
from provisioner.plan.build import build_plan
from provisioner.state.store import ModelRecord, StateStore, file_record
from tests.support.cli import clean_env, run_phoenix

FLUX_DESTS = {
    "models/diffusion_models/flux1-dev.safetensors",
    "models/vae/ae.safetensors",
    "models/text_encoders/clip_l.safetensors",
    "models/text_encoders/t5xxl_fp16.safetensors",
}
SECRETS = {
    "HUGGINGFACE_TOKEN": "hf_PLANTEDhuggingfacetoken123",
    "CIVITAI_TOKEN": "PLANTEDcivitaitoken456",
    "FB_PASSWORD": "PLANTEDfilebrowserpw789",
}


def test_fresh_plan_lists_flux_default_and_exits_2(tmp_path: Path) -> None:
    env = clean_env(PHOENIX_ROOT=str(tmp_path / "ws"))
    result = run_phoenix("plan", "--detailed-exitcode", env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stdout.splitlines()
    for dest in FLUX_DESTS:
        line = next(ln for ln in lines if dest in ln)
        assert line.lstrip().startswith("+ model") and "[default]" in line
    assert "black-forest-labs/FLUX.1-dev is gated" in result.stdout
    assert not (tmp_path / "ws").exists(), "plan must not write"


def test_plan_without_detailed_exitcode_exits_0(tmp_path: Path) -> None:
    result = run_phoenix("plan", "--root", str(tmp_path), env=clean_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_json_plan_matches_committed_schema(tmp_path: Path) -> None:
    result = run_phoenix("plan", "--format", "json", "--root", str(tmp_path), env=clean_env())
    doc = json.loads(result.stdout)
    schema = json.loads((schemas_dir() / "plan.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    models = [i for i in doc["items"] if i["kind"] == "model"]
    assert {i["dest"] for i in models} == FLUX_DESTS
    assert all(i["origin"] == "default" and i["action"] == "create" for i in models)
    assert doc["summary"]["unknown_sizes"] == 4
    assert any("gated" in w for w in doc["warnings"])


def test_all_seed_variables_never_leak_tokens(tmp_path: Path) -> None:
    env = clean_env(
        **SECRETS,
        DEBUG_MODE="true",
        HF_REPOS_TO_DOWNLOAD="black-forest-labs/FLUX.1-dev",
        CIVITAI_CHECKPOINTS_TO_DOWNLOAD="101055",
        CIVITAI_LORAS_TO_DOWNLOAD="618692@691639",
        CIVITAI_VAES_TO_DOWNLOAD="urn:air:sdxl:vae:civitai:333@444",
        EXTRA_PYTHON_PACKAGES="numpy>=1.26,<3 six",
        FB_USERNAME="operator",
        USE_VOLUME="false",
        PARANOID_MODE="true",
        COMFY_CUSTOM_NODE_GIT_URLS="https://github.com/city96/ComfyUI-GGUF@v1",
        PHOENIX_ROOT=str(tmp_path),
    )
    text = run_phoenix("plan", env=env)
    js = run_phoenix("plan", "--format", "json", env=env)
    assert text.returncode == js.returncode == 0, text.stderr + js.stderr
    for output in (text.stdout + text.stderr, js.stdout + js.stderr):
        for secret in SECRETS.values():
            assert secret not in output
    origins = {i["id"]: i["origin"] for i in json.loads(js.stdout)["items"]}
    assert origins["civitai:101055"] == "env:CIVITAI_CHECKPOINTS_TO_DOWNLOAD[0]"
    assert origins["civitai:618692@691639"] == "env:CIVITAI_LORAS_TO_DOWNLOAD[0]"
    assert origins["civitai:333@444"] == "env:CIVITAI_VAES_TO_DOWNLOAD[0]"
    assert (
        origins["hf:black-forest-labs/FLUX.1-dev/ae.safetensors"] == "env:HF_REPOS_TO_DOWNLOAD[0]"
    )


def _comfyui_checkout(root: Path) -> Path:
    """A local git checkout standing in for the image's ComfyUI, and a manifest pinning it."""
    repo = root.parent / "ComfyUI"
    repo.mkdir()
    (repo / "main.py").write_text("print('stand-in')\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    manifest = root.parent / "manifest.yaml"
    manifest.write_text(
        f"version: 1\ncomfyui:\n  repo: file://{repo}\n  ref: {head.stdout.strip()}\n"
        f"  path: {repo}\n"
    )
    return manifest


def _place_everything(root: Path) -> Path:
    """Put every desired item in place and record it, as apply does; returns the manifest."""
    manifest = _comfyui_checkout(root)
    desired, _ = load_desired(str(manifest), {})
    layout = Layout(root)
    for folder in ("models", "custom_nodes", "input", "output", "user", ".phoenix"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    store = StateStore(layout)
    for model in desired.models:
        path = root / "models" / str(model.folder) / str(model.filename)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(model.id.encode())
        digest = hashlib.sha256(model.id.encode()).hexdigest()
        store.put_model(
            ModelRecord(
                model.id,
                model.source,
                (file_record(root, path, digest),),
                {"request": request_key(model)},
            )
        )
    return manifest


def test_plan_after_everything_is_placed_reports_no_changes(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    manifest = str(_place_everything(root))
    args = ("--detailed-exitcode", "--manifest", manifest, "--root", str(root))
    result = run_phoenix("plan", *args, env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 to create, 0 to update" in result.stdout
    verified = run_phoenix("plan", "--verify", *args, env=clean_env())
    assert verified.returncode == 0, verified.stdout


def test_drifted_missing_and_dropped_files(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    _place_everything(root)
    ae = root / "models/vae/ae.safetensors"
    ae.write_bytes(b"tampered, longer than before")
    (root / "models/text_encoders/clip_l.safetensors").unlink()
    desired, _ = load_desired(None, {"HF_REPOS_TO_DOWNLOAD": "black-forest-labs/FLUX.1-dev"})
    desired_less = type(desired)(desired.manifest, desired.models[:-1])
    plan = build_plan(desired_less, Layout(root), load_versions())
    by_id = {c.id: c for c in plan.changes}
    assert by_id["hf:black-forest-labs/FLUX.1-dev/ae.safetensors"].action == "update"
    assert "drifted" in by_id["hf:black-forest-labs/FLUX.1-dev/ae.safetensors"].reason
    assert by_id["hf:comfyanonymous/flux_text_encoders/clip_l.safetensors"].action == "update"
    dropped = by_id[desired.models[-1].id]
    assert dropped.action == "delete" and "--prune" in dropped.reason
    assert plan.has_changes() and plan.has_changes(prune=True)


def test_verify_detects_same_size_corruption(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    _place_everything(root)
    ae = root / "models/vae/ae.safetensors"
    st = ae.stat()
    data = bytearray(ae.read_bytes())
    data[0] ^= 1
    ae.write_bytes(bytes(data))
    os.utime(ae, ns=(st.st_atime_ns, st.st_mtime_ns))
    desired, _ = load_desired(None, {})
    quick = build_plan(desired, Layout(root), load_versions())
    slow = build_plan(desired, Layout(root), load_versions(), verify=True)
    ae_id = "hf:black-forest-labs/FLUX.1-dev/ae.safetensors"
    assert next(c for c in quick.changes if c.id == ae_id).action == "unchanged"
    assert next(c for c in slow.changes if c.id == ae_id).action == "update"


def test_no_color_when_piped(tmp_path: Path) -> None:
    result = run_phoenix("plan", "--root", str(tmp_path), env=clean_env())
    assert "\033[" not in result.stdout


class _Stream:
    def __init__(self, tty: bool) -> None:
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_color_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioner.plan.render import use_color

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color(_Stream(True)) and not use_color(_Stream(False))
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(_Stream(True))


def test_text_plan_shows_pinned_versions(tmp_path: Path) -> None:
    versions = load_versions()
    out = run_phoenix("plan", "--root", str(tmp_path), env=clean_env()).stdout
    assert f"ComfyUI {versions['COMFYUI_VERSION']} @ {versions.comfyui_commit[:12]}" in out
    assert versions["NGC_PYTORCH_TAG"] in out


def test_plan_uses_the_lock_beside_the_manifest_and_reports_drift(tmp_path: Path) -> None:
    from provisioner.state.lockfile import LockFile, desired_hash, lock_path_for, write_lock

    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("version: 1\nmodels:\n  - civitai: 618692@691639\n    type: loras\n")
    desired, _ = load_desired(str(manifest), {})
    pinned = {
        "model_id": 618692,
        "version_id": 691639,
        "file_id": 1,
        "download_url": "https://civitai.com/api/download/models/691639",
        "files": [{"filename": "style.safetensors", "sha256": "ab" * 32, "size": 123456789}],
    }
    write_lock(
        LockFile(desired_hash(desired), {"civitai:618692@691639": pinned}),
        lock_path_for(str(manifest)),
    )
    root = str(tmp_path / "ws")
    doc = json.loads(
        run_phoenix(
            "plan", "--manifest", str(manifest), "--root", root, "--format", "json", env=clean_env()
        ).stdout
    )
    item = next(i for i in doc["items"] if i["id"] == "civitai:618692@691639")
    assert item["size"] == 123456789 and item["dest"] == "models/loras/style.safetensors"
    assert doc["summary"]["download_bytes"] == 123456789
    assert not any(w.startswith("lock ") for w in doc["warnings"])

    manifest.write_text(
        "version: 1\nmodels:\n  - civitai: 618692@691639\n    type: loras\n"
        "  - civitai: 42\n    type: loras\n"
    )
    text = run_phoenix("plan", "--manifest", str(manifest), "--root", root, env=clean_env())
    assert "lock manifest.lock.json: civitai:42 is not in the lock file" in text.stdout


def test_two_items_for_one_destination_are_warned_about(tmp_path: Path) -> None:
    a, b = "a" * 64, "b" * 64
    text = (
        "version: 1\nmodels:\n"
        f"  - url: https://example.com/a/x.safetensors\n    sha256: {a}\n    type: vae\n"
        f"  - url: https://example.com/b/x.safetensors\n    sha256: {b}\n    type: vae\n"
        f"  - url: https://example.com/c/y.safetensors\n    sha256: {a}\n    type: vae\n"
        f"  - url: https://example.com/d/y.safetensors\n    sha256: {a}\n    type: vae\n"
        "  - hf: acme/one\n  - hf: acme/two\n"  # files known only at apply: models/?/?
    )
    path = tmp_path / "m.yaml"
    path.write_text(text)
    desired, _ = load_desired(str(path), {"HF_REPOS_TO_DOWNLOAD": ""})
    plan = build_plan(desired, Layout(tmp_path / "ws"), load_versions())
    shared = [w for w in plan.warnings if "is the destination of" in w]
    assert len(shared) == 1, plan.warnings  # y.safetensors twice with one hash is one file
    assert shared[0].startswith("models/vae/x.safetensors is the destination of 2 items")
    assert f"{path}:3:5" in shared[0] and f"{path}:6:5" in shared[0]

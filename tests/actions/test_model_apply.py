"""Model apply against real servers on loopback: olah for Hugging Face, the Civitai-like hub."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from provisioner.actions.base import ApplyContext
from provisioner.actions.model_runner import FileJob, Runner, check_own_destinations
from provisioner.apply import ApplyReport, apply_all
from provisioner.core.config import load_versions
from provisioner.core.errors import DiskSpaceError, SourceError
from provisioner.core.layout import Layout
from provisioner.plan.build import build_plan
from provisioner.state.store import StateStore, load_state
from tests.support.civitai import LoopbackHub, Served
from tests.support.desired import FLUX_SET, desired_from
from tests.support.hub import GATED_TOKEN, FluxHub
from tests.support.safetensors import LORA_KEYS, safetensors_bytes

FLUX = "black-forest-labs/FLUX.1-dev"
ENC = "comfyanonymous/flux_text_encoders"
CLIP_ONLY = "models:\n  - hf: comfyanonymous/flux_text_encoders\n    files: [clip_l.safetensors]\n"


def apply_text(
    tmp_path: Path, manifest: str, env: dict[str, str] | None = None, **options: Any
) -> tuple[ApplyReport, Layout]:
    """Load ``manifest`` through the real merge and apply it to ``tmp_path/root``."""
    desired, secrets, _ = desired_from(tmp_path, manifest, env)
    layout = Layout(tmp_path / "root")
    return apply_all(desired, layout, load_versions(), secrets, **options), layout


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_partial_files(root: Path) -> None:
    """Nothing but verified, complete files under models/; staging left empty."""
    for p in (root / "models").rglob("*"):
        assert not p.name.endswith((".part", ".incomplete", ".tmp")), p
    staging = root / ".phoenix" / "staging"
    leftovers = [p for p in staging.rglob("*") if p.is_file()] if staging.exists() else []
    assert leftovers == []


def test_flux_set_is_placed_verified_and_a_rerun_is_silent(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    desired, secrets, _ = desired_from(tmp_path, FLUX_SET)
    layout = Layout(tmp_path / "root")
    report = apply_all(desired, layout, load_versions(), secrets)
    assert report.ok, report.failed
    assert report.remaining == []
    expected = {
        "models/diffusion_models/flux1-dev.safetensors": (FLUX, "flux1-dev.safetensors"),
        "models/vae/ae.safetensors": (FLUX, "ae.safetensors"),
        "models/text_encoders/clip_l.safetensors": (ENC, "clip_l.safetensors"),
        "models/text_encoders/t5xxl_fp16.safetensors": (ENC, "t5xxl_fp16.safetensors"),
    }
    for rel, (repo, name) in expected.items():
        assert sha(layout.root / rel) == flux_hub.sha(repo, name), rel
    state = load_state(layout)
    rec = state.models[f"hf:{FLUX}/ae.safetensors"]
    assert rec.files[0].path == "models/vae/ae.safetensors"
    assert rec.files[0].sha256 == flux_hub.sha(FLUX, "ae.safetensors")
    assert rec.resolved["revision"] == flux_hub.hub.repos[FLUX].commits[-1]
    no_partial_files(layout.root)

    flux_hub.proxy.reset()
    again = apply_all(desired, layout, load_versions(), secrets)
    assert again.results == [] and again.remaining == []
    assert flux_hub.proxy.requests == []


def test_glob_entry_routes_by_safetensors_header(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    report, layout = apply_text(
        tmp_path, "models:\n  - hf: acme/mystery\n    files: ['*.safetensors']\n"
    )
    assert report.ok, report.failed
    placed = layout.root / "models/loras/mystery.safetensors"
    assert sha(placed) == flux_hub.sha("acme/mystery", "mystery.safetensors")
    assert report.remaining == []


def test_gated_repo_fails_alone_and_the_others_continue(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    manifest = (
        "models:\n"
        "  - hf: gated-org/gated-model\n    files: [model.safetensors]\n"
        "  - hf: comfyanonymous/flux_text_encoders\n    files: [clip_l.safetensors]\n"
    )
    report, layout = apply_text(tmp_path, manifest)
    failed = {r.id: r.message for r in report.failed}
    assert list(failed) == ["hf:gated-org/gated-model/model.safetensors"]
    assert "https://huggingface.co/gated-org/gated-model" in failed[next(iter(failed))]
    assert (layout.root / "models/text_encoders/clip_l.safetensors").exists()
    assert [c.id for c in report.remaining] == ["hf:gated-org/gated-model/model.safetensors"]
    no_partial_files(layout.root)

    # with a token that has access, the same manifest completes; the token never lands on disk
    desired, secrets, _ = desired_from(tmp_path, manifest, {"HF_TOKEN": GATED_TOKEN})
    report = apply_all(desired, layout, load_versions(), secrets)
    assert report.ok and report.remaining == []
    for p in layout.root.rglob("*"):
        if p.is_file():
            assert GATED_TOKEN.encode() not in p.read_bytes(), p


def test_same_bytes_under_another_name_are_hard_linked(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    manifest = (
        "models:\n"
        "  - hf: black-forest-labs/FLUX.1-dev\n    files: [ae.safetensors]\n    type: vae\n"
        "  - hf: acme/twins\n    files: [ae_copy.safetensors]\n    type: vae\n"
    )
    report, layout = apply_text(tmp_path, manifest, jobs=4)
    assert report.ok, report.failed
    a = layout.root / "models/vae/ae.safetensors"
    b = layout.root / "models/vae/ae_copy.safetensors"
    assert os.stat(a).st_ino == os.stat(b).st_ino
    downloads = [r for r in flux_hub.proxy.requests if r.method == "GET" and "/resolve/" in r.path]
    assert len(downloads) == 1, downloads
    assert report.remaining == []


def _spoil(placed: Path, how: str) -> None:
    if how == "scribbled":
        placed.write_bytes(b"user scribbled here")
    else:  # a pipe with no writer: reading it would block for ever
        placed.unlink()
        os.mkfifo(placed)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["scribbled", "pipe"])
def test_a_changed_placed_file_is_replaced(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path, how: str
) -> None:
    desired, secrets, _ = desired_from(tmp_path, CLIP_ONLY)
    layout = Layout(tmp_path / "root")
    assert apply_all(desired, layout, load_versions(), secrets).ok
    placed = layout.root / "models/text_encoders/clip_l.safetensors"
    _spoil(placed, how)
    plan = build_plan(desired, layout, load_versions(), verify=True)
    [change] = [c for c in plan.changes if c.kind == "model"]
    assert change.action == "update", change
    report = apply_all(desired, layout, load_versions(), secrets, verify=True)
    assert report.ok and report.remaining == [], report
    assert stat.S_ISREG(placed.lstat().st_mode)
    assert sha(placed) == flux_hub.sha(ENC, "clip_l.safetensors")


def test_force_refetches_a_file_in_place(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    report, _ = apply_text(tmp_path, CLIP_ONLY)
    assert report.ok
    flux_hub.proxy.reset()
    forced, _ = apply_text(tmp_path, CLIP_ONLY, force=True)
    assert forced.ok and [r.id for r in forced.results if r.kind == "model"] == [
        "hf:comfyanonymous/flux_text_encoders/clip_l.safetensors"
    ]
    assert flux_hub.proxy.count("/resolve/") >= 1


def test_prune_removes_what_is_no_longer_desired(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    both = (
        "models:\n  - hf: comfyanonymous/flux_text_encoders\n"
        "    files: [clip_l.safetensors, t5xxl_fp8_e4m3fn.safetensors]\n"
    )
    report, layout = apply_text(tmp_path, both)
    assert report.ok
    desired, secrets, _ = desired_from(tmp_path, CLIP_ONLY)
    kept = apply_all(desired, layout, load_versions(), secrets)
    assert kept.results == []
    fp8 = layout.root / "models/text_encoders/t5xxl_fp8_e4m3fn.safetensors"
    assert fp8.exists()
    pruned = apply_all(desired, layout, load_versions(), secrets, prune=True)
    assert pruned.ok and pruned.remaining == []
    assert not fp8.exists()
    assert (layout.root / "models/text_encoders/clip_l.safetensors").exists()
    assert list(load_state(layout).models) == [
        "hf:comfyanonymous/flux_text_encoders/clip_l.safetensors"
    ]


def test_civitai_lora_is_verified_and_token_stays_on_the_api_host(
    civitai: LoopbackHub, tmp_path: Path
) -> None:
    data = safetensors_bytes(LORA_KEYS)
    civitai.required_token = "civitai_secret_token_value"
    civitai.add_model(
        618692,
        name="Style",
        type="LORA",
        versions=[{"id": 691639, "files": [{"name": "style.safetensors", "data": data}]}],
    )
    report, layout = apply_text(
        tmp_path, "models:\n  - civitai: 618692\n", {"CIVITAI_TOKEN": "civitai_secret_token_value"}
    )
    assert report.ok, report.failed
    placed = layout.root / "models/loras/style.safetensors"
    assert placed.read_bytes() == data
    for rec in civitai.records:
        auth = rec.headers.get("Authorization")
        assert (auth is not None) == (rec.server == "api"), rec
    state = load_state(layout).models["civitai:618692"]
    assert state.resolved["version_id"] == "691639"
    assert report.remaining == []
    no_partial_files(layout.root)


def test_civitai_bytes_not_matching_the_api_hash_place_nothing(
    civitai: LoopbackHub, tmp_path: Path
) -> None:
    data = safetensors_bytes(LORA_KEYS)
    civitai.add_model(
        7,
        name="Bad",
        type="LORA",
        versions=[
            {
                "id": 70,
                "files": [{"name": "bad.safetensors", "data": data, "served": data[:-1] + b"!"}],
            }
        ],
    )
    report, layout = apply_text(tmp_path, "models:\n  - civitai: 7\n")
    [failure] = report.failed
    assert "SHA256 mismatch" in failure.message
    assert hashlib.sha256(data).hexdigest() in failure.message
    assert not any(p.is_file() for p in (layout.root / "models").rglob("*"))
    no_partial_files(layout.root)


def test_url_model_without_type_is_routed_by_its_header(
    civitai: LoopbackHub, tmp_path: Path
) -> None:
    data = safetensors_bytes({"decoder.conv_in.weight": 100, "encoder.conv_in.weight": 100})
    url = civitai.serve("my-autoencoder.safetensors", Served(data=data))
    digest = hashlib.sha256(data).hexdigest()
    report, layout = apply_text(tmp_path, f"models:\n  - url: {url}\n    sha256: {digest}\n")
    assert report.ok, report.failed
    assert (layout.root / "models/vae/my-autoencoder.safetensors").read_bytes() == data
    assert report.remaining == []


def test_disk_too_small_is_refused_before_any_byte(civitai: LoopbackHub, tmp_path: Path) -> None:
    civitai.add_model(
        9,
        name="Huge",
        type="Checkpoint",
        versions=[
            {
                "id": 90,
                "files": [{"name": "huge.safetensors", "sha256": "ab" * 32, "size": 1 << 60}],
            }
        ],
    )
    desired, secrets, _ = desired_from(tmp_path, "models:\n  - civitai: 9\n")
    with pytest.raises(DiskSpaceError, match="not enough free space"):
        apply_all(desired, Layout(tmp_path / "root"), load_versions(), secrets)
    assert civitai.requests_to("/files/") == []
    assert civitai.requests_to("/api/download/") == []


def test_two_files_for_one_destination_conflict(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    manifest = (
        "models:\n"
        "  - hf: acme/evolving\n    revision: v1.0\n    files: [weights.safetensors]\n"
        "  - hf: acme/evolving\n    files: ['weights*']\n    type: diffusion_models\n"
    )
    report, _ = apply_text(tmp_path, manifest, jobs=1)
    assert len([r for r in report.results if r.kind == "model"]) == 2
    [failure] = report.failed
    assert "with different content" in failure.message and "subdir" in failure.message


def test_changed_type_moves_the_file_without_downloading_it_again(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    layout = Layout(tmp_path / "root")
    desired, secrets, _ = desired_from(tmp_path, CLIP_ONLY)
    assert apply_all(desired, layout, load_versions(), secrets).ok
    old = layout.root / "models/text_encoders/clip_l.safetensors"
    flux_hub.proxy.reset()
    moved, secrets, _ = desired_from(tmp_path, CLIP_ONLY + "    type: clip\n")
    report = apply_all(moved, layout, load_versions(), secrets)
    assert report.ok and report.remaining == []
    new = layout.root / "models/clip/clip_l.safetensors"
    assert sha(new) == flux_hub.sha(ENC, "clip_l.safetensors")
    assert not old.exists()
    assert not any(r.method == "GET" and "/resolve/" in r.path for r in flux_hub.proxy.requests)
    [record] = load_state(layout).models.values()
    assert [f.path for f in record.files] == ["models/clip/clip_l.safetensors"]


def test_a_correct_file_already_in_place_is_verified_and_kept(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    layout = Layout(tmp_path / "root")
    target = layout.root / "models/text_encoders/clip_l.safetensors"
    target.parent.mkdir(parents=True)
    target.write_bytes(flux_hub.files[ENC]["clip_l.safetensors"])
    desired, secrets, _ = desired_from(tmp_path, CLIP_ONLY)
    report = apply_all(desired, layout, load_versions(), secrets)
    assert report.ok and report.remaining == []
    [result] = [r for r in report.results if r.kind == "model"]
    assert "verified in place" in result.message
    assert not any(r.method == "GET" and "/resolve/" in r.path for r in flux_hub.proxy.requests)
    assert load_state(layout).models[result.id].files[0].sha256 == flux_hub.sha(
        ENC, "clip_l.safetensors"
    )


def test_placed_models_are_private_under_umask_077(
    flux_hub: FluxHub, hf_endpoint: str, civitai: LoopbackHub, tmp_path: Path
) -> None:
    """Issue 5: with the pod's umask 077 every placed model file is 0600 (none is widened)."""
    lora = safetensors_bytes(LORA_KEYS, {"n": "umask"})
    civitai.add_model(
        31,
        name="Private",
        type="LORA",
        versions=[{"id": 310, "files": [{"name": "private.safetensors", "data": lora}]}],
    )
    vae = safetensors_bytes({"decoder.conv_in.weight": 300, "encoder.conv_in.weight": 300})
    url = civitai.serve("private-vae.safetensors", Served(data=vae))
    manifest = CLIP_ONLY + (
        f"  - civitai: 31\n  - url: {url}\n    sha256: {hashlib.sha256(vae).hexdigest()}\n"
    )
    desired, secrets, _ = desired_from(tmp_path, manifest)
    layout = Layout(tmp_path / "root")
    old = os.umask(0o077)
    try:
        report = apply_all(desired, layout, load_versions(), secrets)
    finally:
        os.umask(old)
    assert report.ok, report.failed
    placed = {
        "models/text_encoders/clip_l.safetensors",
        "models/loras/private.safetensors",
        "models/vae/private-vae.safetensors",
    }
    assert {f.path for rec in load_state(layout).models.values() for f in rec.files} == placed
    for rel in placed:
        assert stat.S_IMODE((layout.root / rel).stat().st_mode) == 0o600, rel


def _job(label: str, filename: str, sha256: str | None, folder: str | None = None) -> FileJob:
    def fetch(staging: Path) -> tuple[Path, str]:
        raise AssertionError("nothing is fetched while destinations are checked")

    return FileJob(label, filename, sha256, 10, folder, None, fetch, label)


def test_two_files_of_one_model_for_one_destination_are_named_before_any_fetch() -> None:
    a = _job("hf:o/r/a/x.safetensors", "x.safetensors", "a" * 64)
    b = _job("hf:o/r/b/x.safetensors", "x.safetensors", "b" * 64)
    with pytest.raises(SourceError) as info:
        check_own_destinations("hf:o/r:**/*.safetensors", None, [a, b])
    message = info.value.render()
    assert "hf:o/r/a/x.safetensors" in message and "hf:o/r/b/x.safetensors" in message
    assert "models/?/x.safetensors" in message and "subdir" in message
    # an unknown hash (a non-LFS file) is as different as another hash
    with pytest.raises(SourceError):
        check_own_destinations("m", "sub", [a, _job("hf:o/r/c/x", "x.safetensors", None)])


@pytest.mark.parametrize(
    "jobs",
    [
        # identical bytes may share one destination
        [_job("a/x", "x.safetensors", "a" * 64), _job("b/x", "x.safetensors", "a" * 64)],
        # different names, or known and different folders, never collide
        [_job("a/x", "x.safetensors", "a" * 64), _job("a/y", "y.safetensors", "b" * 64)],
        [_job("a/x", "x.safetensors", "a" * 64, "vae"), _job("b/x", "x.safetensors", None, "lora")],
    ],
)
def test_files_of_one_model_that_cannot_replace_each_other_pass(jobs: list[FileJob]) -> None:
    check_own_destinations("m", None, jobs)


def test_same_name_in_two_repo_folders_fails_the_model_and_places_nothing(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    nested = {
        "a/x.safetensors": safetensors_bytes(LORA_KEYS, {"which": "a"}),
        "b/x.safetensors": safetensors_bytes(LORA_KEYS, {"which": "b"}),
    }
    flux_hub.hub.repo("acme/nested-dupes").commit_files(nested, "same name, two folders")
    report, layout = apply_text(
        tmp_path, "models:\n  - hf: acme/nested-dupes\n    files: ['**/*.safetensors']\n"
    )
    [failure] = report.failed
    assert "a/x.safetensors" in failure.message and "b/x.safetensors" in failure.message
    assert not (layout.root / "models").exists() or not any(
        p.is_file() for p in (layout.root / "models").rglob("*")
    )
    assert not any(r.method == "GET" and "/resolve/" in r.path for r in flux_hub.proxy.requests)
    assert load_state(layout).models == {}


def test_same_bytes_in_two_repo_folders_share_one_destination(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    data = safetensors_bytes(LORA_KEYS, {"which": "both"})
    twins = {"a/x.safetensors": data, "b/x.safetensors": data}
    flux_hub.hub.repo("acme/nested-twins").commit_files(twins, "same bytes, two folders")
    report, layout = apply_text(
        tmp_path, "models:\n  - hf: acme/nested-twins\n    files: ['**/*.safetensors']\n"
    )
    assert report.ok, report.failed
    assert (layout.root / "models/loras/x.safetensors").read_bytes() == data
    [record] = load_state(layout).models.values()
    assert {f.path for f in record.files} == {"models/loras/x.safetensors"}


def test_claim_refuses_a_second_file_of_the_same_model_at_a_claimed_destination(
    tmp_path: Path,
) -> None:
    """The placement-time check: it names both sources; identical bytes may share."""
    layout = Layout(tmp_path / "root")
    runner = Runner(ApplyContext(layout, StateStore(layout), load_versions()))
    rel = "models/loras/x.safetensors"
    runner.claim("m", rel, "a" * 64, "hf:o/r/a/x.safetensors")
    runner.claim("m", rel, "a" * 64, "hf:o/r/c/x.safetensors")  # same bytes: fine
    runner.claim("other", rel, "a" * 64, "url:x")  # same bytes from another model: fine
    with pytest.raises(SourceError) as info:
        runner.claim("m", rel, "b" * 64, "hf:o/r/b/x.safetensors")
    message = info.value.render()
    assert "hf:o/r/a/x.safetensors" in message and "hf:o/r/b/x.safetensors" in message
    with pytest.raises(SourceError, match="also the destination of m"):
        runner.claim("other", rel, "c" * 64, "url:y")

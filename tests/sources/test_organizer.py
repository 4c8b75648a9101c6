"""Organizer routing (pure, table-tested), the safetensors header reader, placement and dedup."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.sources.organizer import (
    folder_from_header,
    folder_from_name,
    relative_dest,
    route,
)
from provisioner.sources.placement import hash_file, link_or_copy, place
from provisioner.sources.safetensors_header import read_header
from tests.support.safetensors import (
    CLIP_KEYS,
    FLUX_KEYS,
    LORA_KEYS,
    T5_KEYS,
    VAE_KEYS,
    safetensors_bytes,
)


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("flux1-dev.safetensors", "diffusion_models"),
        ("flux1-schnell-fp8.safetensors", "diffusion_models"),
        ("FLUX1-DEV.SAFETENSORS", "diffusion_models"),
        ("ae.safetensors", "vae"),
        ("clip_l.safetensors", "text_encoders"),
        ("clip_g.safetensors", "text_encoders"),
        ("t5xxl_fp16.safetensors", "text_encoders"),
        ("t5xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders"),
        ("split_files/vae/ae.safetensors", "vae"),
        ("sdxl_vae.safetensors", "vae"),
        ("my_style_lora.safetensors", "loras"),
        ("RealESRGAN_x4plus.pth", "upscale_models"),
        ("model.safetensors", None),
        ("diffusion_pytorch_model.safetensors", None),
    ],
)
def test_known_names(name: str, folder: str | None) -> None:
    assert folder_from_name(name) == folder


@pytest.mark.parametrize(
    ("keys", "folder"),
    [
        (list(FLUX_KEYS), "diffusion_models"),
        (["model.diffusion_model.double_blocks.0.img_mod.lin.weight"], "diffusion_models"),
        (["model.diffusion_model.input_blocks.0.0.weight", "first_stage_model.decoder.x"],
         "checkpoints"),
        (["transformer_blocks.0.attn.to_q.weight", "single_transformer_blocks.0.x"],
         "diffusion_models"),
        (["input_blocks.0.0.weight", "middle_block.1.x"], "diffusion_models"),
        (list(VAE_KEYS), "vae"),
        (list(CLIP_KEYS), "text_encoders"),
        (list(T5_KEYS), "text_encoders"),
        (list(LORA_KEYS), "loras"),
        (["lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"], "loras"),
        (["transformer.single_transformer_blocks.0.attn.to_k.lora_A.weight"], "loras"),
        (["diffusion_model.double_blocks.0.img_attn.proj.lora_down.weight"], "loras"),
        (["control_model.input_blocks.0.0.weight"], "controlnet"),
        (["vision_model.encoder.layers.0.mlp.fc1.weight"], "clip_vision"),
        (["weird.tensor"], None),
        ([], None),
    ],
)
def test_header_classification(keys: list[str], folder: str | None) -> None:
    assert folder_from_header(keys) == folder


@pytest.mark.parametrize(
    ("kwargs", "folder", "reason", "warns"),
    [
        ({"explicit": "loras", "source_folder": "checkpoints"}, "loras", "type set", False),
        ({"source_folder": "vae"}, "vae", "source metadata", False),
        ({}, "diffusion_models", "known file name", False),
        ({"header_keys": list(VAE_KEYS)}, "diffusion_models", "known file name", False),
    ],
)
def test_route_precedence_for_a_known_name(
    kwargs: dict[str, object], folder: str, reason: str, warns: bool
) -> None:
    r = route("flux1-dev.safetensors", **kwargs)  # type: ignore[arg-type]
    assert (r.folder, r.reason.startswith(reason), r.warning is not None) == (folder, True, warns)


def test_route_by_header_then_default_with_warning() -> None:
    assert route("x.safetensors", header_keys=list(LORA_KEYS)).folder == "loras"
    fallback = route("x.safetensors", header_keys=["weird"])
    assert fallback.folder == "checkpoints"
    assert fallback.warning and "set 'type'" in fallback.warning
    assert route("x.bin").folder == "checkpoints"


def test_relative_dest() -> None:
    assert relative_dest("loras", None, "a.safetensors") == "models/loras/a.safetensors"
    assert relative_dest("loras", "flux/styles/", "a.safetensors") == (
        "models/loras/flux/styles/a.safetensors"
    )


def test_read_header(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(safetensors_bytes(FLUX_KEYS, {"format": "pt"}))
    header = read_header(path)
    assert header is not None
    assert set(header.keys) == set(FLUX_KEYS)
    assert header.metadata == {"format": "pt"}


@pytest.mark.parametrize(
    "content",
    [b"", b"\x01\x00", (10**12).to_bytes(8, "little") + b"{}",
     (4).to_bytes(8, "little") + b"[1,2]", (3).to_bytes(8, "little") + b"\xff\xfe\xfd",
     (20).to_bytes(8, "little") + b"{}"],
)
def test_read_header_rejects_non_safetensors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    assert read_header(path) is None
    assert read_header(tmp_path / "missing") is None


def test_read_header_reads_only_the_header(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    head = safetensors_bytes({})
    with path.open("wb") as fh:
        fh.write(head)
        fh.truncate(1 << 40)  # a sparse terabyte: reading it all would never finish
    header = read_header(path)
    assert header is not None and header.keys == ()


def test_place_and_hard_link_dedup(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    staged = staging / "x.part"
    staged.write_bytes(b"weights")
    dest = tmp_path / "models/vae/ae.safetensors"
    place(staged, dest)
    assert dest.read_bytes() == b"weights" and not staged.exists()
    twin = tmp_path / "models/vae/flux/ae-copy.safetensors"
    assert link_or_copy(dest, twin, staging) == "link"
    assert os.stat(twin).st_ino == os.stat(dest).st_ino
    assert list(staging.iterdir()) == []
    assert hash_file(twin).sha256 == hash_file(dest).sha256


@pytest.fixture
def umask_077() -> Iterator[None]:
    """The pod's umask (issue 5: files 0600, folders 0700) for the test, restored afterwards."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_077")
def test_placed_file_keeps_the_mode_the_umask_gave_it(tmp_path: Path) -> None:
    staged = tmp_path / "staging" / "x.part"
    staged.parent.mkdir()
    staged.write_bytes(b"weights")
    dest = tmp_path / "models/loras/x.safetensors"
    place(staged, dest)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert stat.S_IMODE(dest.parent.stat().st_mode) == 0o700


@pytest.mark.usefixtures("umask_077")
def test_place_across_filesystems_copies_then_removes_the_staged_file(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        staged = Path(other) / "x.part"
        staged.write_bytes(b"weights" * 1000)
        dest = tmp_path / "models/vae/ae.safetensors"
        dest.parent.mkdir(parents=True)
        dest.write_bytes(b"old")
        place(staged, dest)
        assert os.listdir(other) == []
    assert dest.read_bytes() == b"weights" * 1000
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert os.listdir(dest.parent) == ["ae.safetensors"]  # no temp file left beside it


def test_hash_file_git_blob_id(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"hello\n")
    # `printf 'hello\n' | git hash-object --stdin`
    assert hash_file(path, git_blob=True).git_blob == "ce013625030ba8dba906f756967f9e9ca394464a"


@pytest.mark.timeout(30)
def test_hash_file_refuses_a_pipe_at_once(tmp_path: Path) -> None:
    pipe = tmp_path / "model.safetensors"
    os.mkfifo(pipe)  # no writer: a plain open() would block for ever
    with pytest.raises(OSError, match="not a regular file"):
        hash_file(pipe)

"""Cleanup targets per mode, overwrite-then-unlink, protected models, and the deadline."""

from __future__ import annotations

import time
from pathlib import Path

from provisioner.layout import Layout
from provisioner.runtime.cleanup import Target, cleanup_targets, in_phoenix_image, run_cleanup


def _populate(root: Path, home: Path) -> Layout:
    layout = Layout(root)
    files = {
        layout.model_folder("loras") / "keep.safetensors": b"model bytes",
        layout.output / "img.png": b"png",
        layout.output / "sub" / "deep.png": b"deep",
        layout.input / "in.png": b"in",
        layout.user / "comfyui.db": b"db",
        layout.logs / "comfyui.log": b"log",
        layout.staging / "x.part": b"partial",
        layout.phoenix / "run" / "filebrowser.db": b"fb",
        home / ".bash_history": b"export HF_TOKEN=hf_secret",
        home / ".cache" / "huggingface" / "token": b"hf_secret",
        home / ".cache" / "pip" / "wheel.whl": b"wheel",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return layout


def test_normal_ephemeral_cleanup(tmp_path: Path) -> None:
    home = tmp_path / "home"
    layout = _populate(tmp_path / "ws", home)
    targets = cleanup_targets(layout, "ephemeral", False, [home])
    summary = run_cleanup(targets, time.monotonic() + 30, protected=[layout.models])
    assert not (home / ".bash_history").exists()
    assert not (home / ".cache" / "huggingface" / "token").exists()
    assert not (home / ".cache" / "pip").exists()
    assert layout.staging.is_dir() and not any(layout.staging.iterdir())
    assert not (layout.phoenix / "run").exists()
    assert (layout.output / "img.png").exists() and (layout.logs / "comfyui.log").exists()
    assert summary.files == 5 and summary.overwritten == 2 and not summary.timed_out
    assert "removed 5 files" in summary.line()


def test_paranoid_ephemeral_removes_outputs_inputs_user_logs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    layout = _populate(tmp_path / "ws", home)
    summary = run_cleanup(
        cleanup_targets(layout, "ephemeral", True, [home]),
        time.monotonic() + 30,
        protected=[layout.models],
    )
    for gone in ("output/img.png", "output/sub", "input/in.png", "user/comfyui.db"):
        assert not (layout.root / gone).exists(), gone
    assert not (layout.logs / "comfyui.log").exists()
    assert layout.output.is_dir()  # the folder stays, its contents go
    assert (layout.model_folder("loras") / "keep.safetensors").read_bytes() == b"model bytes"
    assert summary.overwritten >= 6


def test_paranoid_volume_leaves_models_and_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    layout = _populate(tmp_path / "ws", home)
    run_cleanup(cleanup_targets(layout, "volume", True, [home]), time.monotonic() + 30)
    assert (layout.model_folder("loras") / "keep.safetensors").exists()
    assert (layout.output / "img.png").exists() and (layout.user / "comfyui.db").exists()
    assert (home / ".cache" / "pip" / "wheel.whl").exists()  # caches kept on a volume
    assert not (home / ".bash_history").exists()


def test_volume_data_on_request_but_never_models(tmp_path: Path) -> None:
    home = tmp_path / "home"
    layout = _populate(tmp_path / "ws", home)
    targets = cleanup_targets(layout, "volume", True, [home], include_volume_data=True)
    assert all(not str(t.path).startswith(str(layout.models)) for t in targets)
    run_cleanup(targets, time.monotonic() + 30)
    assert not (layout.output / "img.png").exists()
    assert (layout.model_folder("loras") / "keep.safetensors").exists()


def test_protected_paths_are_skipped_even_if_targeted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    layout = _populate(tmp_path / "ws", home)
    summary = run_cleanup(
        [Target(layout.models, "mistake", shred=True)],
        time.monotonic() + 5,
        protected=[layout.models],
    )
    assert summary.skipped_protected == 1
    assert (layout.model_folder("loras") / "keep.safetensors").exists()


def test_deadline_stops_cleanup(tmp_path: Path) -> None:
    home = tmp_path / "home"
    layout = _populate(tmp_path / "ws", home)
    ticks = iter(range(1000))
    summary = run_cleanup(
        cleanup_targets(layout, "ephemeral", True, [home]), 3.0, clock=lambda: float(next(ticks))
    )
    assert summary.timed_out and "STOPPED at the deadline" in summary.line()
    assert summary.files < 11


def test_overwrite_really_zeroes_before_unlink(tmp_path: Path) -> None:
    """Keep a second hard link to watch the bytes change before the name disappears."""
    home = tmp_path / "home"
    layout = _populate(tmp_path / "ws", home)
    witness = tmp_path / "witness"
    witness.hardlink_to(layout.output / "img.png")
    run_cleanup(cleanup_targets(layout, "ephemeral", True, [home]), time.monotonic() + 30)
    assert witness.read_bytes() == b"\x00\x00\x00"


def test_secret_remnants_in_logs_are_masked(tmp_path: Path) -> None:
    from provisioner.redact import forget_secrets, register_secret
    from provisioner.runtime.cleanup import log_files, scrub_secret_remnants

    layout = Layout(tmp_path)
    layout.logs.mkdir(parents=True)
    layout.user.mkdir()
    leaky = layout.logs / "comfyui.log.1"
    leaky.write_text("GET https://x/?token=hf_LEAKED123 failed\n")
    leaky.chmod(0o600)
    (layout.user / "comfyui.log").write_text("clean line\n")
    (layout.logs / "binary.log").write_bytes(b"\xff\xfe hf_LEAKED123 \x00")
    register_secret("hf_LEAKED123")
    try:
        files = log_files(layout)
        assert leaky in files and layout.user / "comfyui.log" in files
        assert scrub_secret_remnants(files) == 2
    finally:
        forget_secrets()
    assert leaky.read_text() == "GET https://x/?token=*** failed\n"
    assert leaky.stat().st_mode & 0o777 == 0o600
    assert (layout.logs / "binary.log").read_bytes() == b"\xff\xfe *** \x00"
    assert (layout.user / "comfyui.log").read_text() == "clean line\n"


def test_without_homes_every_target_is_inside_the_workspace(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "ws")
    for mode in ("ephemeral", "volume"):
        for paranoid in (False, True):
            targets = cleanup_targets(layout, mode, paranoid, (), include_volume_data=True)
            assert targets and all(t.path.is_relative_to(layout.root) for t in targets)
    with_home = cleanup_targets(layout, "ephemeral", False, [tmp_path / "home"])
    outside = {t.why for t in with_home if not t.path.is_relative_to(layout.root)}
    assert outside == {"Hugging Face token file", "shell history", "package cache (ephemeral mode)"}


def test_in_phoenix_image_reads_the_image_flag() -> None:
    assert all(in_phoenix_image({"PHOENIX_IN_IMAGE": v}) for v in ("1", "on", "true"))
    for env in ({}, {"PHOENIX_IN_IMAGE": "0"}, {"PHOENIX_IN_IMAGE": ""}, {"PHOENIX_IN_IMAGE": "x"}):
        assert not in_phoenix_image(env)


def test_run_touches_homes_only_inside_the_image(tmp_path: Path) -> None:
    from provisioner.runtime.run import homes_to_clean

    given = [tmp_path / "h"]
    assert homes_to_clean(given, {}, ["sduser"]) == given
    assert homes_to_clean(None, {}, ["sduser"]) == []
    assert homes_to_clean(None, {"PHOENIX_IN_IMAGE": "0"}, []) == []
    inside = homes_to_clean(None, {"PHOENIX_IN_IMAGE": "1"}, [])
    assert inside and all(isinstance(p, Path) for p in inside)

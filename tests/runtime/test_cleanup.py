"""Cleanup targets per mode, overwrite-then-unlink, protected models, and the deadline."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provisioner.core.layout import Layout
from provisioner.runtime.cleanup import (
    ERRORS_SHOWN,
    Target,
    cleanup_targets,
    error_lines,
    home_from_env,
    in_phoenix_image,
    run_cleanup,
)
from tests.support.paths import REPO


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
    from provisioner.core.redact import forget_secrets, register_secret
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


def _sparse(path: Path) -> None:
    """1 GiB apparent size, two small runs of data, holes elsewhere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(1 << 30)
        f.write(b"secret at the start")
        f.seek(1 << 29)
        f.write(b"secret in the middle")


def test_sparse_file_is_overwritten_without_being_filled_in(tmp_path: Path) -> None:
    big = tmp_path / "ws" / "output" / "big.bin"
    _sparse(big)
    witness = tmp_path / "witness"  # a second link keeps the inode to inspect after the unlink
    witness.hardlink_to(big)
    before = os.stat(witness).st_blocks
    summary = run_cleanup(
        [Target(big.parent, "test", shred=True, contents_only=True)], time.monotonic() + 30
    )
    assert not big.exists() and summary.overwritten == 1 and not summary.errors
    after = os.stat(witness)
    assert after.st_size == 1 << 30  # never grown
    assert after.st_blocks * 512 < 1 << 20 and after.st_blocks <= before + 16, after.st_blocks
    with witness.open("rb") as f:
        assert f.read(64) == bytes(64)
        f.seek(1 << 29)
        assert f.read(64) == bytes(64)


def test_without_seek_data_the_whole_file_is_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_lseek = os.lseek

    def no_seek_data(fd: int, pos: int, how: int) -> int:
        if how in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_lseek(fd, pos, how)

    monkeypatch.setattr(os, "lseek", no_seek_data)
    secret = tmp_path / "out" / "a.png"
    secret.parent.mkdir()
    secret.write_bytes(b"x" * 3000)
    witness = tmp_path / "witness"
    witness.hardlink_to(secret)
    summary = run_cleanup([Target(secret, "test", shred=True)], time.monotonic() + 30)
    assert summary.overwritten == 1 and not secret.exists()
    assert witness.read_bytes() == bytes(3000)


def test_a_failed_overwrite_still_removes_the_file_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", disk_full)
    big = tmp_path / "out" / "big.bin"
    _sparse(big)
    summary = run_cleanup(
        [Target(big.parent, "test", shred=True, contents_only=True)], time.monotonic() + 30
    )
    assert not big.exists() and summary.files == 1 and summary.overwritten == 0
    assert summary.errors == [f"{big}: not overwritten (No space left on device), removed anyway"]


def test_one_failing_file_does_not_stop_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    layout = _populate(tmp_path / "ws", home)
    stuck = layout.output / "img.png"
    real_unlink = os.unlink

    def unlink(path: str, *args: object, **kwargs: object) -> None:
        if Path(path) == stuck:
            raise PermissionError(errno.EPERM, "Operation not permitted", path)
        real_unlink(path)

    monkeypatch.setattr(os, "unlink", unlink)
    summary = run_cleanup(cleanup_targets(layout, "ephemeral", True, [home]), time.monotonic() + 30)
    assert summary.errors == [f"{stuck}: not removed (Operation not permitted)"]
    assert f"1 errors (first: {stuck}: not removed" in summary.line()
    assert stuck.read_bytes() == b"\x00\x00\x00"  # overwritten before the unlink failed
    assert not (layout.output / "sub").exists()  # its sibling folder went
    assert not (layout.input / "in.png").exists() and not (layout.logs / "comfyui.log").exists()


def test_a_folder_that_cannot_be_removed_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "tmp"
    (tree / "mnt").mkdir(parents=True)
    (tree / "mnt" / "f").write_bytes(b"f")

    def busy(path: str, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy", path)

    monkeypatch.setattr(os, "rmdir", busy)
    summary = run_cleanup([Target(tree, "test")], time.monotonic() + 30)
    assert summary.files == 1
    assert summary.errors == [
        f"{tree / 'mnt'}: folder not removed (Device or resource busy)",
        f"{tree}: folder not removed (Device or resource busy)",
    ]


def test_error_lines_name_each_path_then_a_hint() -> None:
    assert error_lines([]) == []
    lines = error_lines(["/w/output/a.png: not removed (Operation not permitted)"])
    assert lines[0] == "  error: /w/output/a.png: not removed (Operation not permitted)"
    assert lines[-1].startswith("  hint: ") and "chattr -i" in lines[-1]
    many = error_lines([f"/w/{i}: not removed (x)" for i in range(ERRORS_SHOWN + 5)])
    assert len(many) == ERRORS_SHOWN + 2 and many[-2] == "  ... and 5 more"


@pytest.mark.parametrize(
    ("environ", "why"),
    [
        ({}, "blank or unset"),
        ({"HOME": ""}, "blank or unset"),
        ({"HOME": "  "}, "blank or unset"),
        ({"HOME": "home/me"}, "HOME='home/me' is relative"),
        ({"HOME": "."}, "HOME='.' is relative"),
    ],
)
def test_only_an_absolute_home_is_cleaned(environ: dict[str, str], why: str) -> None:
    homes, why_not = home_from_env(environ)
    assert homes == [] and why_not is not None and why in why_not
    assert home_from_env({"HOME": "/root"}) == ([Path("/root")], None)


def test_relative_homes_and_hf_home_are_never_targets(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "ws")
    targets = cleanup_targets(layout, "ephemeral", True, [Path("home"), Path(".")], hf_home="hf")
    assert all(t.path.is_relative_to(layout.root) for t in targets)


@pytest.mark.parametrize("home", ["", "rel"])
def test_include_home_with_a_blank_or_relative_home_is_skipped(tmp_path: Path, home: str) -> None:
    root, cwd = tmp_path / "ws", tmp_path / "cwd"
    root.mkdir()
    planted = [
        cwd / ".bash_history",
        cwd / "rel" / ".bash_history",
        cwd / "rel" / ".cache" / "pip" / "x",
    ]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"keep me")
    done = subprocess.run(
        [sys.executable, "-m", "provisioner", "cleanup", "--root", str(root), "--mode",
         "ephemeral", "--include-home"],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": home},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "warning: env:HOME: " in done.stderr and "no home folder is cleaned" in done.stderr
    assert all(p.read_bytes() == b"keep me" for p in planted)

"""Interpreter and checkout facts, directory args, plan hash, `phoenix doctor` and `cleanup`."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.commands import cleanup as cleanup_cmd
from provisioner.core.layout import Layout
from provisioner.manifest.desired import VariantChoice
from provisioner.manifest.models import ComfyUIConfig, Manifest, Storage
from provisioner.runtime.cliargs import parse_cli_spec
from provisioner.runtime.doctor import doctor_report, render_doctor
from provisioner.runtime.flags import InstalledFeatures
from provisioner.runtime.gpu import GpuFacts
from provisioner.runtime.launch import directory_args
from provisioner.runtime.probe import comfyui_version, git_head, probe_features
from tests.support.paths import FIXTURES

FAKE = FIXTURES / "fake_comfyui"
RTX5090 = GpuFacts("NVIDIA GeForce RTX 5090", (12, 0), 32 * 1024**3, "575.57.08", "12.9")


def test_probe_this_interpreter() -> None:
    features = probe_features(sys.executable, with_torch=True)
    assert features.python == sys.version.split()[0]
    assert features.flash_attn is None  # not installed here
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        assert features.torch is None and features.torch_arch_list is None


def test_probe_broken_interpreter_is_empty_with_warning(tmp_path: Path) -> None:
    assert probe_features(str(tmp_path / "no-python"), with_torch=False) == InstalledFeatures()


def test_checkout_version_and_commit(tmp_path: Path) -> None:
    assert comfyui_version(FAKE) == "0.0.0-fake"
    assert comfyui_version(tmp_path) is None and git_head(tmp_path) is None
    repo = tmp_path / "ComfyUI"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "main.py").write_text("")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert git_head(repo) == head.strip()
    subprocess.run([*git, "pack-refs", "--all"], check=True)
    assert git_head(repo) == head.strip()
    subprocess.run([*git, "checkout", "-q", "--detach"], check=True)
    assert git_head(repo) == head.strip()


def test_directory_args_with_and_without_base_directory(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    modern = parse_cli_spec('p.add_argument("--base-directory")\np.add_argument("--port")')
    assert directory_args(layout, modern) == (["--base-directory", str(tmp_path)], None)
    old = parse_cli_spec(
        'p.add_argument("--output-directory")\np.add_argument("--input-directory")\n'
        'p.add_argument("--extra-model-paths-config", nargs="+", action="append")'
    )
    args, yaml_text = directory_args(layout, old)
    assert args == [
        "--output-directory", str(layout.output), "--input-directory", str(layout.input)
    ]  # fmt: skip
    assert yaml_text is not None and f"base_path: {tmp_path}" in yaml_text
    assert "  loras: models/loras" in yaml_text and "custom_nodes: custom_nodes" in yaml_text


def test_doctor_report_for_an_rtx5090_with_old_torch(tmp_path: Path) -> None:
    manifest = Manifest(comfyui=ComfyUIConfig(path=str(FAKE), args=["--normalvram"]))
    old_torch = InstalledFeatures(
        torch="2.5.1", torch_cuda="12.4", torch_arch_list=("sm_80", "sm_86", "sm_90"), python="3.12"
    )
    report = doctor_report(
        manifest, tmp_path, {}, python=sys.executable,
        read_gpu=lambda: RTX5090, probe=lambda python, with_torch: old_torch,
    )  # fmt: skip
    assert report["gpu"]["compute_capability"] == "12.0"
    assert report["torch_arch_check"]["ok"] is False
    assert "no kernel image is available" in report["torch_arch_check"]["message"]
    assert "--bf16-unet" in report["flags"]["args"]
    assert report["flags"]["dropped"] == ["--normalvram"]
    assert report["versions"]["comfyui_version"] == "0.0.0-fake"
    text = render_doctor(report)
    assert (
        "torch/GPU check: FAIL" in text and "RTX 5090" in text and "dropped: --normalvram" in text
    )


def test_doctor_flags_follow_the_chosen_variant_like_run(tmp_path: Path) -> None:
    # An fp8 or GGUF variant never gets --bf16-unet (ComfyUI would recast the weights); doctor
    # must show the flags phoenix run would launch with, not those of a variant-less manifest.
    manifest = Manifest(comfyui=ComfyUIConfig(path=str(FAKE)))
    new_torch = InstalledFeatures(
        torch="2.8.0", torch_cuda="12.8", torch_arch_list=("sm_90", "sm_120"), python="3.12"
    )
    fp8 = VariantChoice(
        "black-forest-labs/FLUX.2-dev", "fp8", "fits 32 GiB", "profile", 24.0, "fp8", 1
    )
    report = doctor_report(
        manifest, tmp_path, {}, python=sys.executable,
        read_gpu=lambda: RTX5090, probe=lambda python, with_torch: new_torch, variants=[fp8],
    )  # fmt: skip
    assert report["flags"]["weights"] == "fp8"
    assert not any(a.endswith("-unet") for a in report["flags"]["args"])
    assert "variant: black-forest-labs/FLUX.2-dev fp8 (fp8): fits 32 GiB" in render_doctor(report)
    plain = doctor_report(
        manifest, tmp_path, {}, python=sys.executable,
        read_gpu=lambda: RTX5090, probe=lambda python, with_torch: new_torch,
    )  # fmt: skip
    assert "--bf16-unet" in plain["flags"]["args"] and plain["variants"] == []


def test_doctor_report_without_gpu(tmp_path: Path) -> None:
    report = doctor_report(
        Manifest(comfyui=ComfyUIConfig(path=str(tmp_path)), storage=Storage(mode="volume")),
        tmp_path, {},
        python=sys.executable,
    )  # fmt: skip
    assert report["gpu"] is None and report["torch_arch_check"]["ok"] is None
    assert "--cpu" in report["flags"]["args"]
    assert report["storage"]["mode"] == "volume" and report["storage"]["warnings"]
    assert any("cannot read" in w for w in report["flags"]["warnings"])
    assert "none visible (CPU mode)" in render_doctor(report)


def test_doctor_text_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing installed, no GPU, no checkout, no FileBrowser: words, never "None"."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    report = doctor_report(
        Manifest(comfyui=ComfyUIConfig(path=str(tmp_path / "no-checkout"))), tmp_path, {},
        python=str(tmp_path / "no-python"), read_gpu=lambda: None,
        probe=lambda python, with_torch: InstalledFeatures(),
    )  # fmt: skip
    assert report["versions"]["filebrowser"] is None and report["packages"]["torch"] is None
    text = render_doctor(report)
    assert "None" not in text, text
    assert "none visible (CPU mode)" in text
    for line in ("torch            not installed", "xformers         not installed",
                 "python           unknown (interpreter not found)",
                 "comfyui_version  unknown", "comfyui_commit   unknown (not a git checkout)",
                 "filebrowser      not installed"):  # fmt: skip
        assert f"  {line}" in text, (line, text)

    cpu_torch = InstalledFeatures(torch="2.8.0", python="3.12.3", torch_arch_list=())
    report = doctor_report(
        Manifest(comfyui=ComfyUIConfig(path=str(FAKE))), tmp_path, {}, python=sys.executable,
        read_gpu=lambda: None, probe=lambda python, with_torch: cpu_torch,
    )  # fmt: skip
    text = render_doctor(report)
    assert "None" not in text and "torch_cuda       none (CPU-only torch build)" in text
    assert "torch_arch_list  unknown" in text


def test_doctor_shows_unknown_for_an_unreadable_filebrowser_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "filebrowser").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "filebrowser").chmod(0o700)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    report = doctor_report(
        Manifest(comfyui=ComfyUIConfig(path=str(FAKE))), tmp_path, {}, python=sys.executable,
        read_gpu=lambda: None, probe=lambda python, with_torch: InstalledFeatures(),
    )  # fmt: skip
    assert report["versions"]["filebrowser"] == "unknown"
    assert "filebrowser      unknown" in render_doctor(report)


def _cleanup_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cleanup_cmd.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cleanup_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PARANOID_MODE", "true")
    layout = Layout(tmp_path / "ws")
    (layout.output).mkdir(parents=True)
    (layout.output / "a.png").write_bytes(b"x" * 10)
    (layout.model_folder("vae")).mkdir(parents=True)
    (layout.model_folder("vae") / "ae.safetensors").write_bytes(b"w")
    root = str(layout.root)
    assert cleanup_cmd.run(_cleanup_args("--root", root, "--dry-run")) == 0
    listing = capsys.readouterr().out
    assert "overwrite+remove" in listing and str(layout.output) in listing
    assert (layout.output / "a.png").exists()
    assert cleanup_cmd.run(_cleanup_args("--root", root, "--mode", "ephemeral")) == 0
    assert "cleanup: removed" in capsys.readouterr().out
    assert not (layout.output / "a.png").exists()
    assert (layout.model_folder("vae") / "ae.safetensors").exists()


def test_unknown_user_flag_does_not_block_phoenix_choice(tmp_path: Path) -> None:
    """`--normalvram` is gone from this checkout: it is dropped, and Phoenix picks VRAM itself."""
    from provisioner.runtime.cliargs import load_cli_spec
    from provisioner.runtime.launch import launch_args

    comfy = ComfyUIConfig(path=str(FAKE), args=["--normalvram", "--reserve-vram", "2"])
    spec = load_cli_spec(FAKE)
    launch = launch_args(None, InstalledFeatures(), comfy, Layout(tmp_path), spec, tmp_path / "x")
    assert "--cpu" in launch.args and "--normalvram" not in launch.args
    assert launch.args[-2:] == ("--reserve-vram", "2")
    assert launch.dropped == ("--normalvram",) and launch.extra_paths_yaml is None
    no_spec = launch_args(None, InstalledFeatures(), comfy, Layout(tmp_path), None, tmp_path / "x")
    assert "--normalvram" in no_spec.args and any("not checked" in w for w in no_spec.warnings)


def test_default_comfy_python_is_a_real_interpreter(tmp_path: Path) -> None:
    from provisioner.runtime.run_inputs import default_comfy_python

    python = default_comfy_python(Layout(tmp_path))
    assert probe_features(python, with_torch=False).python is not None

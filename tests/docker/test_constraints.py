"""docker/constraints.py: the image's torch stack is pinned, base constraints win, and guarded
requirements that are not installed are dropped. Run as a real child process against real
``.dist-info`` directories on PYTHONPATH."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "constraints.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("image_constraints", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mod = _load()


def _dist(site: Path, name: str, version: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )


def _run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    # -S: only the fake site dir (and the stdlib) is visible, like a bare base image.
    return subprocess.run(
        [sys.executable, "-S", str(SCRIPT), *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )


def test_build_time_and_runtime_guard_the_same_names() -> None:
    """The image build (stdlib only) and the runtime guard protect one set of distributions."""
    from provisioner.software.guard import GUARDED_NAMES

    assert mod.GUARDED_EXACT == GUARDED_NAMES


@pytest.mark.parametrize(
    ("name", "guarded"),
    [
        ("torch", True), ("Torch", True), ("torchvision", True), ("torchaudio", True),
        ("triton", True), ("pytorch_triton", True), ("xformers", True), ("nvidia-cudnn-cu12", True),
        ("nvidia-cublas-cu13", True), ("nvidia-ml-py", False), ("torchsde", False),
        ("transformers", False), ("nvidia-dali-cuda120", False),
    ],
)
def test_guarded_names(name: str, guarded: bool) -> None:
    assert mod.is_guarded(name) is guarded


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("torch", "torch"), ("numpy>=1.25.0", "numpy"), ("Pillow", "pillow"),
        ("pydantic~=2.0", "pydantic"), ("ruamel.yaml==0.18.15", "ruamel-yaml"),
        ("torchaudio ; sys_platform == 'linux'", "torchaudio"), ("pkg @ https://x/y.whl", "pkg"),
        ("#non essential dependencies:", None), ("", None), ("-r other.txt", None),
        ("--index-url https://x", None), ("https://x/y.whl", None),
    ],
)
def test_requirement_name(line: str, name: str | None) -> None:
    assert mod.requirement_name(line) == name


def test_merge_pins_base_wins_and_guarded_never_pinned_from_config() -> None:
    pins = mod.parse_pins(["transformers==4.57.1", "PyDantic==2.11.10", "torch==2.9.0"])
    kept, superseded = mod.merge_pins(pins, {"pydantic"})
    assert kept == ["transformers==4.57.1"]
    assert superseded == ["pydantic==2.11.10", "torch==2.9.0"]


@pytest.mark.parametrize("bad", ["transformers", "transformers>=4", "==1.0", "a==b c"])
def test_parse_pins_rejects_non_exact(bad: str) -> None:
    with pytest.raises(ValueError, match="NAME==VERSION"):
        mod.parse_pins([bad])


def test_filter_requirements_drops_only_missing_guarded() -> None:
    text = "torch\ntorchsde\ntorchvision\ntorchaudio\nnumpy>=1.25.0\n"
    out, dropped = mod.filter_requirements(text, {"torch": "2.7.0a0", "torchvision": "0.22.0a0"})
    assert out == "torch\ntorchsde\ntorchvision\nnumpy>=1.25.0\n"
    assert dropped == ["torchaudio"]


def test_pyproject_dependencies_of_this_repo() -> None:
    pyproject = SCRIPT.parents[1] / "pyproject.toml"
    deps = mod.pyproject_dependencies(pyproject.read_text(encoding="utf-8"))
    assert any(d.startswith("huggingface_hub") for d in deps)
    assert any(d.startswith("nvidia-ml-py") for d in deps)


def test_write_pins_installed_torch_and_reports_superseded(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _dist(site, "torch", "2.7.0a0+7c8ec84dab.nv25.3")
    _dist(site, "torchvision", "0.22.0a0")
    _dist(site, "nvidia-ml-py", "12.570.172")
    base = tmp_path / "constraint.txt"
    base.write_text("pydantic==2.10.6\ntorch==2.7.0a0+7c8ec84dab.nv25.3\n", encoding="utf-8")
    out = tmp_path / "etc" / "constraints.txt"
    proc = _run(site, "write", str(out), "--base", str(base),
                "--pin", "transformers==4.57.1", "--pin", "pydantic==2.11.10")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines == ["torch==2.7.0a0+7c8ec84dab.nv25.3", "torchvision==0.22.0a0",
                     "transformers==4.57.1"]
    assert "pydantic==2.11.10 superseded by the base image's constraint" in proc.stdout


def test_write_without_base_file_keeps_every_pin(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _dist(site, "torch", "2.7.0")
    out = tmp_path / "c.txt"
    proc = _run(site, "write", str(out), "--base", str(tmp_path / "absent.txt"),
                "--pin", "pydantic==2.11.10")
    assert proc.returncode == 0, proc.stderr
    assert "pydantic==2.11.10" in out.read_text(encoding="utf-8").splitlines()
    assert "not found" in proc.stdout


def test_write_fails_when_the_base_has_no_torch(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    proc = _run(site, "write", str(tmp_path / "c.txt"), "--base", str(tmp_path / "x"))
    assert proc.returncode == 1
    assert "torch is not installed" in proc.stderr
    assert not (tmp_path / "c.txt").exists()


def test_write_rejects_a_floating_pin(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _dist(site, "torch", "2.7.0")
    proc = _run(site, "write", str(tmp_path / "c.txt"), "--pin", "transformers>=4")
    assert proc.returncode == 1
    assert "expected NAME==VERSION" in proc.stderr


def test_requirements_subcommand_on_comfyui_shaped_file(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _dist(site, "torch", "2.7.0")
    _dist(site, "torchvision", "0.22.0")
    src = tmp_path / "requirements.txt"
    src.write_text("torch\ntorchsde\ntorchvision\ntorchaudio\nav>=14.2.0\n", encoding="utf-8")
    dest = tmp_path / "filtered.txt"
    proc = _run(site, "requirements", str(src), str(dest))
    assert proc.returncode == 0, proc.stderr
    assert "torchaudio" not in dest.read_text(encoding="utf-8")
    assert "not installing torchaudio" in proc.stdout


def test_pyproject_deps_subcommand_and_missing_file(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["a>=1", "b"]\n', encoding="utf-8")
    dest = tmp_path / "deps.txt"
    assert _run(site, "pyproject-deps", str(pyproject), str(dest)).returncode == 0
    assert dest.read_text(encoding="utf-8") == "a>=1\nb\n"
    missing = _run(site, "pyproject-deps", str(tmp_path / "nope.toml"), str(dest))
    assert missing.returncode == 1 and "constraints: error:" in missing.stderr

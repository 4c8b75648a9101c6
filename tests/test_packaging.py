"""A regular wheel install works away from the source tree (manifests, schemas, config ship)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.cli import clean_env
from tests.support.paths import REPO


def test_wheel_installs_and_plans_outside_the_checkout(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(wheels), str(REPO)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    wheel = next(wheels.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("manifests/default.yaml", "manifests/profiles.yaml",
                    "schemas/manifest.schema.json", "config/versions.conf"):  # fmt: skip
        assert any(n.endswith(f".data/data/share/phoenix/{shipped}") for n in names), shipped
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    env = clean_env()
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(venv / "bin" / "phoenix"), "plan", "--root", str(tmp_path / "ws")],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "models/diffusion_models/flux1-dev.safetensors" in result.stdout
    origin = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import provisioner; print(provisioner.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert str(venv) in origin.stdout, "the test must exercise the installed copy"

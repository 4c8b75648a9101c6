"""The image's constraint mechanism, end to end with real pip in a real venv: a torch is
installed, docker/constraints.py writes the constraint file, and with ``PIP_CONSTRAINT`` set
as the Dockerfile sets it (two space-separated files) a package that wants another torch is
refused while one that accepts the installed torch installs. Wheels come from a local folder."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support.wheels import build_wheel

_PIP = (sys.executable, "-m", "pip")
SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "constraints.py"


@pytest.fixture(scope="module")
def image_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """(venv python, wheel folder, env with PIP_CONSTRAINT) after the image's build steps."""
    root = tmp_path_factory.mktemp("guard")
    wheels = root / "wheels"
    wheels.mkdir()
    build_wheel(wheels, "torch", "2.7.0")
    build_wheel(wheels, "torch", "2.9.0")
    build_wheel(wheels, "wants-new-torch", "1.0", ("torch>=2.9",))
    build_wheel(wheels, "any-torch-node", "1.0", ("torch>=2.0",))
    build_wheel(wheels, "transformers", "4.57.1")
    build_wheel(wheels, "transformers", "4.99.0")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)  # pip runs from the test's own interpreter
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([*_PIP, "--python", str(python), "install", "-q", "torch==2.7.0"], env=env,
                   check=True, timeout=300)
    base = root / "etc-pip-constraint.txt"
    base.write_text("# the base image's own pins\n", encoding="utf-8")
    ours = root / "etc-phoenix-constraints.txt"
    subprocess.run([python, str(SCRIPT), "write", str(ours), "--base", str(base),
                    "--pin", "transformers==4.57.1"], env=env, check=True, timeout=120)
    env["PIP_CONSTRAINT"] = f"{base} {ours}"
    return python, wheels, env


def _pip(python: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_PIP, "--python", str(python), "install", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _version(python: Path, dist: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True,
                         timeout=60)
    return out.stdout.strip()


def test_a_package_wanting_another_torch_is_refused(
    image_like: tuple[Path, Path, dict[str, str]],
) -> None:
    python, _, env = image_like
    proc = _pip(python, env, "wants-new-torch")
    assert proc.returncode != 0
    assert "torch" in proc.stdout + proc.stderr
    assert _version(python, "torch") == "2.7.0"


def test_a_package_accepting_the_installed_torch_installs(
    image_like: tuple[Path, Path, dict[str, str]],
) -> None:
    python, _, env = image_like
    assert _pip(python, env, "any-torch-node").returncode == 0
    assert _version(python, "torch") == "2.7.0"


def test_an_explicit_torch_upgrade_is_refused(
    image_like: tuple[Path, Path, dict[str, str]],
) -> None:
    python, _, env = image_like
    proc = _pip(python, env, "torch==2.9.0")
    assert proc.returncode != 0
    assert _version(python, "torch") == "2.7.0"


def test_versions_conf_pins_hold_for_unpinned_requests(
    image_like: tuple[Path, Path, dict[str, str]],
) -> None:
    python, _, env = image_like
    assert _pip(python, env, "transformers").returncode == 0
    assert _version(python, "transformers") == "4.57.1"

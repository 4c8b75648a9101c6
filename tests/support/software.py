"""pytest fixtures for the software tests (ComfyUI, nodes, packages, guard, snapshots).

Real things only: git repositories on disk reached through ``file://`` (tests/support/gitrepos.py),
wheels built into a local folder and installed by the real uv/pip with ``--no-index``, and an
"image" Python (a venv with a fake torch 2.13.0 and CUDA dists) under the workspace venv, like
the NGC image's Python. Registered for the whole suite by tests/conftest.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.core.layout import Layout
from tests.support.wheels import build_wheel, local_only_env

#: what the fake image ships (the guard must keep these)
IMAGE_DISTS = {
    "torch": "2.13.0",
    "torchvision": "0.28.0",
    "nvidia-cublas-cu12": "12.8.4.1",
    "triton": "3.5.0",
}
#: extra wheels in the local folder: (name, version, requires)
FOLDER_WHEELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("torch", "1.0", ()),
    ("phx-alpha", "1.0", ()),
    ("phx-alpha", "2.0", ()),
    ("phx-beta", "1.0", ("phx-alpha>=1",)),
    ("phx-gamma", "0.5", ()),
    ("phx-oldtorch", "1.0", ("torch<2",)),
    ("phx-usestorch", "1.0", ("torch>=2",)),
)


def _uv(*args: str) -> None:
    subprocess.run(["uv", *args], check=True, capture_output=True, text=True)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local wheel folder (the only package index the tests use)."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    for name, version in IMAGE_DISTS.items():
        build_wheel(folder, name, version)
    for name, version, requires in FOLDER_WHEELS:
        build_wheel(folder, name, version, requires)
    return folder


@pytest.fixture(scope="session")
def image_python(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Path:
    """The image's interpreter: a venv with torch 2.13.0 and friends installed."""
    image = tmp_path_factory.mktemp("image") / "venv"
    _uv("venv", "--quiet", str(image))
    py = image / "bin" / "python"
    pins = [f"{k}=={v}" for k, v in IMAGE_DISTS.items()]
    _uv(
        "pip", "install", "--quiet", "--python", str(py), "--no-index", "-f", str(wheelhouse), *pins
    )
    return py


@pytest.fixture
def software_env(monkeypatch: pytest.MonkeyPatch, image_python: Path, wheelhouse: Path) -> Path:
    """Point Phoenix at the image Python and the local wheel folder (no network)."""
    monkeypatch.setenv("PHOENIX_BASE_PYTHON", str(image_python))
    for var, value in {**local_only_env(wheelhouse), "UV_NO_PROGRESS": "1"}.items():
        monkeypatch.setenv(var, value)
    for var in (
        "PIP_CONSTRAINT", "UV_CONSTRAINT", "PHOENIX_INSTALLER",
        "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
    ):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    return image_python


@pytest.fixture
def sw_layout(tmp_path: Path) -> Layout:
    """A fresh workspace root."""
    root = tmp_path / "workspace"
    root.mkdir()
    return Layout(root)


@pytest.fixture
def sw_repos(tmp_path: Path) -> Iterator[Path]:
    """A folder for the test's git repositories."""
    base = tmp_path / "repos"
    base.mkdir()
    yield base

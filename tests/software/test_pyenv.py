"""The workspace venv over the image's Python, and reading installed distributions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from provisioner.core.errors import InstallError
from provisioner.core.layout import Layout
from provisioner.software import guard, proc, pyenv


def test_venv_sees_the_image_torch_and_is_created_once(
    software_env: Path, sw_layout: Layout
) -> None:
    py = pyenv.ensure_venv(sw_layout)
    assert py == pyenv.venv_python(sw_layout) and py.exists()
    assert "include-system-site-packages = true" in (sw_layout.venv / "pyvenv.cfg").read_text()
    dists = pyenv.installed_distributions(py)
    assert dists.is_venv
    assert dists.dists["torch"].version == "2.13.0" and not dists.dists["torch"].in_env
    assert "python_version" in dists.marker_env
    with proc.recording() as calls:
        assert pyenv.ensure_venv(sw_layout) == py
    assert calls == []
    assert list(sw_layout.staging.iterdir()) == []


def test_target_python_is_the_base_until_the_venv_exists(
    software_env: Path, sw_layout: Layout
) -> None:
    assert pyenv.target_python(sw_layout) == software_env
    pyenv.ensure_venv(sw_layout)
    assert pyenv.target_python(sw_layout) == pyenv.venv_python(sw_layout)


def test_broken_leftover_venv_is_replaced(software_env: Path, sw_layout: Layout) -> None:
    sw_layout.venv.mkdir(parents=True)
    (sw_layout.venv / "junk").write_text("half a venv")
    py = pyenv.ensure_venv(sw_layout)
    assert py.exists() and not (sw_layout.venv / "junk").exists()


def test_installer_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    py = tmp_path / "python"
    monkeypatch.setenv("PHOENIX_INSTALLER", "pip")
    assert pyenv.installer_argv(py)[:4] == [str(py), "-m", "pip", "install"]
    assert pyenv.installer_name() == "pip"
    monkeypatch.setenv("PHOENIX_INSTALLER", "auto")
    assert Path(pyenv.installer_argv(py)[0]).name == "uv"
    monkeypatch.setenv("PHOENIX_INSTALLER", "conda")
    with pytest.raises(InstallError):
        pyenv.installer_argv(py)
    monkeypatch.setenv("PHOENIX_INSTALLER", "uv")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InstallError):
        pyenv.installer_argv(py)


def test_guarded_install_merges_the_image_constraint(
    software_env: Path, sw_layout: Layout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image_constraints = tmp_path / "image-constraints.txt"
    image_constraints.write_text("phx-alpha<2\n")
    monkeypatch.setenv("PIP_CONSTRAINT", str(image_constraints))
    py = pyenv.ensure_venv(sw_layout)
    outcome = guard.guarded_install(py, ["phx-alpha"], what="test", staging=sw_layout.staging)
    assert outcome.ran and outcome.after.dists["phx-alpha"].version == "1.0"
    again = guard.guarded_install(py, ["phx-alpha"], what="test", staging=sw_layout.staging)
    assert not again.ran and again.skipped == ("phx-alpha",)


def test_install_failure_is_an_install_error_naming_the_item(
    software_env: Path, sw_layout: Layout
) -> None:
    py = pyenv.ensure_venv(sw_layout)
    with pytest.raises(InstallError) as info:
        guard.guarded_install(
            py, ["phx-nowhere==9"], what="node nowhere", staging=sw_layout.staging
        )
    assert info.value.where == "node nowhere" and "phx-nowhere" in info.value.message


def test_old_uv_without_excludes_falls_back_to_pip(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "bin" / "uv"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Usage: uv pip install [OPTIONS] <PACKAGE>'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    monkeypatch.setenv("PHOENIX_INSTALLER", "auto")
    assert pyenv.installer_name() == "pip"
    monkeypatch.setenv("PHOENIX_INSTALLER", "uv")
    with pytest.raises(InstallError) as info:
        pyenv.installer_name()
    assert "--excludes" in info.value.message


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "child"])
def test_requires_dist_is_read_only_when_asked(
    in_process: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not in_process:  # same interpreter, read through the child script
        monkeypatch.setattr(pyenv, "_in_process_entries", lambda python: None)
    python = Path(sys.executable)
    light = pyenv.installed_distributions(python)
    full = pyenv.installed_distributions(python, requires=True)
    assert light.versions() == full.versions()
    assert all(d.requires == () for d in light.dists.values())
    pydantic = full.dists["pydantic"]
    assert pydantic.in_env and any(r.startswith("pydantic-core") for r in pydantic.requires)


def test_a_shared_read_with_requires_serves_both_questions() -> None:
    python = Path(sys.executable)
    with pyenv.shared_facts():
        light = pyenv.installed_distributions(python)
        full = pyenv.installed_distributions(python, requires=True)
        assert full is not light  # the light read cannot answer for Requires-Dist
        assert pyenv.installed_distributions(python) is full
        assert pyenv.installed_distributions(python, requires=True) is full

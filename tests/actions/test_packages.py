"""Extra Python packages: PEP 508 at plan time, satisfied ones skipped, guarded installs."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.actions import packages
from provisioner.core.errors import ManifestError
from provisioner.core.layout import Layout
from provisioner.core.requirements import split_requirements
from provisioner.manifest.desired import DesiredPackage, DesiredState
from provisioner.manifest.models import Manifest
from provisioner.plan import packages as packages_plan
from provisioner.software import proc, pyenv
from provisioner.state.store import load_state
from tests.support.contexts import apply_ctx, observe_ctx
from tests.support.desired import desired_nodes


def plan(desired: DesiredState, lay: Layout):  # type: ignore[no-untyped-def]
    return packages_plan.diff(desired, packages_plan.observe(desired, observe_ctx(lay)))


def test_env_style_list_parses_and_installs(software_env: Path, sw_layout: Layout) -> None:
    reqs = split_requirements("phx-alpha>=1,<2 phx-gamma")
    assert reqs == ["phx-alpha>=1,<2", "phx-gamma"]
    desired = desired_nodes(packages=reqs)
    changes = plan(desired, sw_layout)
    assert [(c.action, c.id, c.reason) for c in changes] == [
        ("create", "pkg:phx-alpha>=1,<2", "not installed"),
        ("create", "pkg:phx-gamma", "not installed"),
    ]
    results = packages.apply(changes, apply_ctx(sw_layout))
    assert [(r.id, r.ok) for r in results] == [
        ("pkg:phx-alpha>=1,<2", True),
        ("pkg:phx-gamma", True),
    ]
    versions = pyenv.installed_distributions(pyenv.venv_python(sw_layout)).versions()
    assert versions["phx-alpha"] == "1.0" and versions["phx-gamma"] == "0.5"
    assert load_state(sw_layout).packages["phx-alpha>=1,<2"].installed == "1.0"

    with proc.recording() as calls:
        again = plan(desired, sw_layout)
        assert packages.apply(again, apply_ctx(sw_layout)) == []
    assert [c.action for c in again] == ["unchanged", "unchanged"]
    assert all("install" not in call for call in calls), calls


def test_satisfied_by_the_image_is_skipped_without_the_installer(
    software_env: Path, sw_layout: Layout
) -> None:
    desired = desired_nodes(packages=["torch>=2", "triton"])
    with proc.recording() as calls:
        changes = plan(desired, sw_layout)
    assert [(c.action, c.reason) for c in changes] == [
        ("unchanged", "torch 2.13.0 installed"),
        ("unchanged", "triton 3.5.0 installed"),
    ]
    assert len(calls) == 1  # reading installed distributions, nothing else


def test_invalid_spec_is_a_plan_error_naming_the_item(
    software_env: Path, sw_layout: Layout
) -> None:
    bad = DesiredPackage("pkg:numpy>=>1", "numpy>=>1", "EXTRA_PYTHON_PACKAGES")
    desired = DesiredState(Manifest(), packages=(bad,))
    with pytest.raises(ManifestError) as info:
        plan(desired, sw_layout)
    assert "EXTRA_PYTHON_PACKAGES: pkg:numpy>=>1" in info.value.render()
    assert "PEP 508" in info.value.render()


def test_guard_conflict_fails_that_package_only(software_env: Path, sw_layout: Layout) -> None:
    desired = desired_nodes(packages=["torch==1.0", "phx-gamma"])
    changes = plan(desired, sw_layout)
    assert changes[0].action == "update" and "will fail" in changes[0].reason
    results = {r.id: r for r in packages.apply(changes, apply_ctx(sw_layout))}
    assert not results["pkg:torch==1.0"].ok
    assert "torch is pinned to 2.13.0" in results["pkg:torch==1.0"].message
    assert results["pkg:phx-gamma"].ok
    versions = pyenv.installed_distributions(pyenv.venv_python(sw_layout)).versions()
    assert versions["torch"] == "2.13.0" and versions["phx-gamma"] == "0.5"


def test_a_guarded_package_asked_for_by_name_is_tried_not_left_out(
    software_env: Path, sw_layout: Layout
) -> None:
    # Nodes' and ComfyUI's own torchaudio is left out (test_nodes.py); one the user names in
    # python_packages is theirs to ask for: it is tried, and fails as that package alone.
    desired = desired_nodes(packages=["torchaudio", "phx-gamma"])
    results = {r.id: r for r in packages.apply(plan(desired, sw_layout), apply_ctx(sw_layout))}
    # the local wheel folder has no torchaudio: the installer was asked, and said so
    assert not results["pkg:torchaudio"].ok
    assert "torchaudio" in results["pkg:torchaudio"].message
    assert "left out" not in results["pkg:torchaudio"].message
    assert results["pkg:phx-gamma"].ok
    versions = pyenv.installed_distributions(pyenv.venv_python(sw_layout)).versions()
    assert "torchaudio" not in versions and versions["torch"] == "2.13.0"


def test_upgrade_is_an_update(software_env: Path, sw_layout: Layout) -> None:
    assert all(
        r.ok for r in packages.apply(plan(desired_nodes(packages=["phx-alpha==1.0"]), sw_layout),
                                     apply_ctx(sw_layout))
    )  # fmt: skip
    changes = plan(desired_nodes(packages=["phx-alpha>=2"]), sw_layout)
    assert [(c.action, c.reason) for c in changes] == [
        ("update", "phx-alpha 1.0 installed, need >=2")
    ]
    assert packages.apply(changes, apply_ctx(sw_layout))[0].ok
    versions = pyenv.installed_distributions(pyenv.venv_python(sw_layout)).versions()
    assert versions["phx-alpha"] == "2.0"


def test_pip_is_used_when_asked(software_env: Path, sw_layout: Layout, monkeypatch) -> None:
    monkeypatch.setenv("PHOENIX_INSTALLER", "pip")
    changes = plan(desired_nodes(packages=["phx-beta"]), sw_layout)
    with proc.recording() as calls:
        assert packages.apply(changes, apply_ctx(sw_layout))[0].ok
    assert any(call[1:4] == ["-m", "pip", "install"] for call in calls), calls

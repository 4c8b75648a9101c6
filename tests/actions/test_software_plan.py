"""The software kinds inside the real pipeline: env vars → load_desired → build_plan → apply.

Only the software kinds are registered here (``plan/kinds.py``), for the test.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from provisioner.actions import comfyui, nodes, packages
from provisioner.actions.base import ApplyContext
from provisioner.core.errors import PhoenixError
from provisioner.core.layout import Layout
from provisioner.manifest.merge import load_desired
from provisioner.plan import build as plan_build
from provisioner.plan import kinds
from provisioner.plan.render import render_text
from provisioner.software import proc, pyenv
from provisioner.state.store import StateStore
from tests.support.contexts import versions
from tests.support.gitrepos import Repo, node_repo


@pytest.fixture
def software_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        kinds,
        "KIND_MODULES",
        (
            "provisioner.plan.comfyui",
            "provisioner.plan.packages",
            "provisioner.plan.nodes",
        ),
    )


def env_for(nodes_value: str, packages_value: str, manifest_dir: Path) -> dict[str, str]:
    return {
        "HF_REPOS_TO_DOWNLOAD": "",
        "COMFY_CUSTOM_NODE_GIT_URLS": nodes_value,
        "EXTRA_PYTHON_PACKAGES": packages_value,
    }


def write_manifest(path: Path, comfy: Path, repo: str, ref: str) -> str:
    path.write_text(f"version: 1\ncomfyui:\n  path: {comfy}\n  repo: {repo}\n  ref: {ref}\n")
    return str(path)


def apply_all(plan: plan_build.Plan, sw_layout: Layout) -> list[bool]:
    ctx = ApplyContext(
        sw_layout, StateStore(sw_layout), versions(), log=logging.getLogger("phoenix.test")
    )
    oks: list[bool] = []
    for module in (comfyui, packages, nodes):
        changes = [c for c in plan.changes if c.kind == module.KIND]
        oks += [r.ok for r in module.apply(changes, ctx)]  # type: ignore[attr-defined]
    return oks


def test_env_vars_to_plan_to_apply_to_empty_plan(
    software_kinds: None, software_env: Path, sw_layout: Layout, tmp_path: Path
) -> None:
    comfy = Repo(tmp_path / "repos" / "ComfyUI")
    commit = comfy.commit({"main.py": "print(1)\n", "requirements.txt": "torch\n"})
    node = node_repo(tmp_path / "repos", "ComfyUI-Tagged", requirements="phx-gamma\n")
    node.tag("v1.0")
    manifest = write_manifest(tmp_path / "m.yaml", tmp_path / "ComfyUI", comfy.url, commit)
    env = env_for(f"{node.url}@v1.0", "phx-alpha>=1,<3 phx-beta", tmp_path)
    desired, _ = load_desired(manifest, env)
    plan = plan_build.build_plan(desired, sw_layout, versions())
    text = render_text(plan)
    assert "+ comfyui" in text and "+ node" in text and "+ package" in text
    assert [(c.kind, c.id) for c in plan.changes] == [
        ("comfyui", "comfyui"),
        ("package", "pkg:phx-alpha"),
        ("package", "pkg:phx-beta"),
        ("node", "node:ComfyUI-Tagged"),
    ]
    assert all(apply_all(plan, sw_layout))
    with proc.recording() as calls:
        again = plan_build.build_plan(desired, sw_layout, versions())
    assert not again.has_changes(), render_text(again)
    assert not [c for c in calls if Path(c[0]).name in {"git", "uv"} or "pip" in c]
    versions_now = pyenv.installed_distributions(pyenv.venv_python(sw_layout)).versions()
    assert versions_now["phx-gamma"] == "0.5" and versions_now["torch"] == "2.13.0"


def test_node_dropped_from_the_env_is_removed_by_apply_prune(
    software_env: Path, sw_layout: Layout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioner.apply import apply_all as apply_desired
    from provisioner.manifest.desired import Secrets

    monkeypatch.setattr(kinds, "KIND_MODULES", ("provisioner.plan.nodes",))

    node = node_repo(tmp_path / "repos", "ComfyUI-Dropped")
    desired, _ = load_desired(None, env_for(f"{node.url}@main", "", tmp_path))
    assert apply_desired(desired, sw_layout, versions(), Secrets()).ok
    folder = sw_layout.custom_nodes / "ComfyUI-Dropped"
    assert folder.is_dir()

    fewer, _ = load_desired(None, env_for("", "", tmp_path))
    plan = plan_build.build_plan(fewer, sw_layout, versions())
    assert not plan.has_changes() and plan.has_changes(prune=True)
    text = render_text(plan)
    line = next(ln for ln in text.splitlines() if "node:ComfyUI-Dropped" in ln)
    assert line.split()[:3] == ["-", "node", "custom_nodes/ComfyUI-Dropped"], line
    assert "1 would be removed with --prune" in text and "No changes" not in text
    assert "`apply --prune` would remove the `-` items" in text
    pruning = render_text(plan, prune=True)
    assert "1 to remove" in pruning and "Nothing to create" not in pruning
    assert "No changes" not in pruning
    assert apply_desired(fewer, sw_layout, versions(), Secrets()).ok
    assert folder.is_dir()  # not without --prune

    report = apply_desired(fewer, sw_layout, versions(), Secrets(), prune=True)
    assert report.ok and report.remaining == [], report
    assert not folder.exists()
    assert not plan_build.build_plan(fewer, sw_layout, versions()).has_changes(prune=True)


def test_invalid_package_spec_fails_at_plan_time(
    software_kinds: None, software_env: Path, tmp_path: Path
) -> None:
    with pytest.raises(PhoenixError) as info:
        load_desired(None, env_for("", "numpy>=1.26,<3 si!x", tmp_path))
    assert "EXTRA_PYTHON_PACKAGES" in info.value.render() and "si!x" in info.value.render()

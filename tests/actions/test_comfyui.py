"""ComfyUI as a plan item: clone, move to the pinned commit, refuse local edits, requirements."""

from __future__ import annotations

from pathlib import Path

from provisioner.actions import comfyui
from provisioner.core.config import Versions
from provisioner.core.layout import Layout
from provisioner.manifest.desired import DesiredState
from provisioner.manifest.models import ComfyUIConfig, Manifest
from provisioner.plan import comfyui as comfyui_plan
from provisioner.plan.change import Change
from provisioner.software import proc, pyenv
from provisioner.software.guard import absent_guarded
from provisioner.state.store import load_state
from tests.support.contexts import apply_ctx, observe_ctx, versions
from tests.support.gitrepos import Repo


def comfy_repo(base: Path) -> tuple[Repo, list[str]]:
    repo = Repo(base / "ComfyUI")
    first = repo.commit(
        {"main.py": "print('comfy v1')\n", "requirements.txt": "torch\ntorchvision\nphx-gamma\n"},
        "v1",
    )
    repo.tag("v0.3.1")
    second = repo.commit({"main.py": "print('comfy v2')\n"}, "v2")
    return repo, [first, second]


def desired_at(path: Path, ref: str | None = None, repo: str | None = None) -> DesiredState:
    return DesiredState(Manifest(comfyui=ComfyUIConfig(path=str(path), ref=ref, repo=repo)))


def plan(desired: DesiredState, lay: Layout, vers: Versions) -> list[Change]:
    return comfyui_plan.diff(desired, comfyui_plan.observe(desired, observe_ctx(lay, vers)))


def test_clone_at_versions_conf_commit_then_unchanged(
    software_env: Path, sw_layout: Layout, tmp_path: Path
) -> None:
    repo, (first, _second) = comfy_repo(tmp_path / "repos")
    vers = versions(repo.url, first)
    checkout = tmp_path / "opt" / "ComfyUI"
    desired = desired_at(checkout)
    changes = plan(desired, sw_layout, vers)
    assert [(c.action, c.origin) for c in changes] == [("create", "config/versions.conf")]
    results = comfyui.apply(changes, apply_ctx(sw_layout, vers))
    assert results[0].ok, results[0].message
    assert (checkout / "main.py").read_text() == "print('comfy v1')\n"
    assert load_state(sw_layout).comfyui_commit == first
    # only the missing requirement was installed; torch stays the image's
    dists = pyenv.installed_distributions(comfyui_plan.comfy_python(sw_layout))
    assert dists.dists["phx-gamma"].in_env and not dists.dists["torch"].in_env
    assert list((tmp_path / "opt").iterdir()) == [checkout]

    with proc.recording() as calls:
        assert [c.action for c in plan(desired, sw_layout, vers)] == ["unchanged"]
    assert not [c for c in calls if c[0] == "git"]


def test_manifest_ref_overrides_and_wrong_commit_is_an_update(
    software_env: Path, sw_layout: Layout, tmp_path: Path
) -> None:
    repo, (first, second) = comfy_repo(tmp_path / "repos")
    vers = versions(repo.url, second)
    checkout = tmp_path / "ComfyUI"
    assert comfyui.apply(plan(desired_at(checkout), sw_layout, vers), apply_ctx(sw_layout, vers))[
        0
    ].ok
    desired = desired_at(checkout, ref="v0.3.1")
    changes = plan(desired, sw_layout, vers)
    assert changes[0].action == "update" and changes[0].origin == "manifest"
    assert f"at {second[:12]}" in changes[0].reason
    assert comfyui.apply(changes, apply_ctx(sw_layout, vers))[0].ok
    assert load_state(sw_layout).comfyui_commit == first
    assert [c.action for c in plan(desired, sw_layout, vers)] == ["unchanged"]


def test_local_modifications_refused_unless_forced(
    software_env: Path, sw_layout: Layout, tmp_path: Path
) -> None:
    repo, (first, second) = comfy_repo(tmp_path / "repos")
    checkout = tmp_path / "ComfyUI"
    vers = versions(repo.url, first)
    assert comfyui.apply(plan(desired_at(checkout), sw_layout, vers), apply_ctx(sw_layout, vers))[
        0
    ].ok
    (checkout / "main.py").write_text("print('patched by hand')\n")
    newer = versions(repo.url, second)
    changes = plan(desired_at(checkout), sw_layout, newer)
    assert "local modifications" in changes[0].reason
    refused = comfyui.apply(changes, apply_ctx(sw_layout, newer))[0]
    assert not refused.ok and "local modifications" in refused.message and refused.required
    assert (checkout / "main.py").read_text() == "print('patched by hand')\n"
    assert comfyui.apply(changes, apply_ctx(sw_layout, newer, force=True))[0].ok
    assert (checkout / "main.py").read_text() == "print('comfy v2')\n"


def test_bad_repo_url_fails_and_leaves_nothing(
    software_env: Path, sw_layout: Layout, tmp_path: Path
) -> None:
    vers = versions((tmp_path / "missing").as_uri(), "1" * 40)
    checkout = tmp_path / "opt" / "ComfyUI"
    result = comfyui.apply(plan(desired_at(checkout), sw_layout, vers), apply_ctx(sw_layout, vers))[
        0
    ]
    assert not result.ok and "ComfyUI" in result.message and "missing" in result.message
    assert not checkout.exists()
    assert list((tmp_path / "opt").iterdir()) == []


def _tree_digest(path: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_observe_writes_nothing(software_env: Path, sw_layout: Layout, tmp_path: Path) -> None:
    repo, (first, second) = comfy_repo(tmp_path / "repos")
    checkout = tmp_path / "ComfyUI"
    vers = versions(repo.url, first)
    assert comfyui.apply(plan(desired_at(checkout), sw_layout, vers), apply_ctx(sw_layout, vers))[
        0
    ].ok
    (checkout / "main.py").write_text("print('edited')\n")
    before = _tree_digest(checkout), _tree_digest(sw_layout.root)
    changes = plan(desired_at(checkout, ref="v0.3.1"), sw_layout, versions(repo.url, second))
    assert changes[0].action == "unchanged"  # v0.3.1 is the first commit: nothing to do
    changes = plan(desired_at(checkout), sw_layout, versions(repo.url, second))
    assert changes[0].details.get("dirty") is True
    assert (_tree_digest(checkout), _tree_digest(sw_layout.root)) == before


def test_guarded_requirement_the_image_lacks_is_left_out(
    software_env: Path, sw_layout: Layout, tmp_path: Path
) -> None:
    # Real ComfyUI lists torchaudio, which the image leaves out (a second torch from PyPI):
    # found by the image rehearsal, where every start failed trying to install it.
    repo = Repo(tmp_path / "repos" / "ComfyUI")
    commit = repo.commit(
        {"main.py": "print('comfy')\n", "requirements.txt": "torch\ntorchaudio\nphx-gamma\n"}, "v1"
    )
    vers = versions(repo.url, commit)
    checkout = tmp_path / "opt" / "ComfyUI"
    desired = desired_at(checkout)
    results = comfyui.apply(plan(desired, sw_layout, vers), apply_ctx(sw_layout, vers))
    assert results[0].ok, results[0].message
    assert "left out torchaudio: guarded and not in the image" in results[0].message
    dists = pyenv.installed_distributions(comfyui_plan.comfy_python(sw_layout))
    assert "phx-gamma" in dists.dists and "torchaudio" not in dists.dists
    assert [c.action for c in plan(desired, sw_layout, vers)] == ["unchanged"]


def test_absent_guarded_names_only_guarded_packages_the_environment_lacks() -> None:
    reqs = ["torch>=2", "torchaudio", "nvidia-cudnn-cu12", "numpy<2", "Torch_Vision"]
    assert absent_guarded(reqs, {"torch": "2.7.0", "torchvision": "0.22"}) == [
        "torchaudio",
        "nvidia-cudnn-cu12",
    ]

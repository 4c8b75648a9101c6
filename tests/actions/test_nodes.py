"""Custom nodes: pinned checkouts, guarded requirements, no-op re-runs, failure isolation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provisioner.actions import nodes
from provisioner.core.layout import Layout
from provisioner.manifest.desired import DesiredNode, DesiredState
from provisioner.manifest.models import NodeSpec
from provisioner.plan import nodes as nodes_plan
from provisioner.plan.change import Change, ItemResult
from provisioner.software import proc, pyenv
from provisioner.state.store import load_state
from tests.support.contexts import apply_ctx, observe_ctx
from tests.support.desired import desired_nodes
from tests.support.gitrepos import Repo, node_repo


def plan(desired: DesiredState, lay: Layout) -> list[Change]:
    return nodes_plan.diff(desired, nodes_plan.observe(desired, observe_ctx(lay)))


def run_apply(desired: DesiredState, lay: Layout, force: bool = False) -> list[ItemResult]:
    return nodes.apply(plan(desired, lay), apply_ctx(lay, force=force))


def installed(lay: Layout) -> dict[str, str]:
    return pyenv.installed_distributions(pyenv.venv_python(lay)).versions()


def test_tag_pinned_node_installs_and_second_apply_runs_nothing(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    repo = node_repo(sw_repos, "ComfyUI-Alpha", requirements="phx-beta\n")
    tagged = repo.commit({"nodes.py": "X = 1\n"}, "v1.0")
    repo.tag("v1.0")
    repo.commit({"nodes.py": "X = 2\n"}, "after the tag")
    desired = desired_nodes(NodeSpec(url=repo.url, ref="v1.0"))

    changes = plan(desired, sw_layout)
    assert [(c.action, c.id, c.reason) for c in changes] == [
        ("create", "node:ComfyUI-Alpha", "not installed")
    ]
    results = nodes.apply(changes, apply_ctx(sw_layout))
    assert [r.ok for r in results] == [True], results
    dest = sw_layout.custom_nodes / "ComfyUI-Alpha"
    assert (dest / "nodes.py").read_text() == "X = 1\n"
    record = load_state(sw_layout).nodes["ComfyUI-Alpha"]
    assert (record.commit, record.ref, record.url) == (tagged, "v1.0", repo.url)
    assert record.requirements_sha256 == nodes_plan.requirements_sha256(dest)
    assert installed(sw_layout)["phx-beta"] == "1.0"
    assert installed(sw_layout)["phx-alpha"] == "2.0"  # a dependency from the wheel folder

    with proc.recording() as calls:
        again = plan(desired, sw_layout)
        assert nodes.apply(again, apply_ctx(sw_layout)) == []
    assert [c.action for c in again] == ["unchanged"]
    assert not [c for c in calls if Path(c[0]).name in {"git", "uv", "pip"} or "pip" in c]


def test_changed_ref_is_an_update_and_lands_on_the_new_commit(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    repo = node_repo(sw_repos, "beta-node")
    first = repo.git("rev-parse", "HEAD")
    repo.tag("v1")
    second = repo.commit({"nodes.py": "V = 2\n"}, "v2")
    repo.tag("v2")
    assert [
        r.ok for r in run_apply(desired_nodes(NodeSpec(url=repo.url, ref="v1")), sw_layout)
    ] == [True]
    assert load_state(sw_layout).nodes["beta-node"].commit == first

    desired = desired_nodes(NodeSpec(url=repo.url, ref="v2"))
    changes = plan(desired, sw_layout)
    assert [(c.action, c.reason) for c in changes] == [("update", "ref changed: v1 → v2")]
    assert [r.ok for r in nodes.apply(changes, apply_ctx(sw_layout))] == [True]
    assert load_state(sw_layout).nodes["beta-node"].commit == second
    observed = nodes_plan.observe_node(desired.nodes[0], sw_layout.custom_nodes, None, None)
    assert observed.head == second
    assert [c.action for c in plan(desired, sw_layout)] == ["unchanged"]


def test_torch_pin_fails_alone_and_torch_is_unchanged(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    good = node_repo(sw_repos, "good-node", requirements="phx-gamma==0.5\n")
    bad = node_repo(sw_repos, "old-torch-node", requirements="torch==1.0\nphx-alpha\n")
    also_good = node_repo(sw_repos, "plain-node")
    desired = desired_nodes(
        NodeSpec(url=good.url, ref="main"),
        NodeSpec(url=bad.url, ref="main"),
        NodeSpec(url=also_good.url, ref="main"),
    )
    results = {r.id: r for r in run_apply(desired, sw_layout)}
    assert results["node:good-node"].ok and results["node:plain-node"].ok
    failed = results["node:old-torch-node"]
    assert not failed.ok
    assert "torch==1.0" in failed.message and "pinned to 2.13.0" in failed.message
    versions = installed(sw_layout)
    assert versions["torch"] == "2.13.0"
    assert versions["phx-gamma"] == "0.5"
    assert "phx-alpha" not in versions  # nothing of the failed node's requirements went in
    # the checkout stays, its requirements are retried next time
    assert [c.action for c in plan(desired, sw_layout)] == ["unchanged", "update", "unchanged"]


def test_guarded_requirement_the_image_lacks_is_left_out_and_said(
    software_env: Path, sw_layout: Layout, sw_repos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Many nodes list torchaudio, as ComfyUI does; the image has none, and asking PyPI for one
    # would fail the node (its wheel pins a torch of its own). A user's own package is not
    # left out: tests/actions/test_packages.py.
    repo = node_repo(sw_repos, "audio-node", requirements="torchaudio\nphx-gamma==0.5\n")
    desired = desired_nodes(NodeSpec(url=repo.url, ref="main"))
    with caplog.at_level("WARNING"):
        (result,) = run_apply(desired, sw_layout)
    assert result.ok, result.message
    assert "left out torchaudio" in result.message
    assert "node audio-node; left out torchaudio: guarded and not in the image" in caplog.text
    versions = installed(sw_layout)
    assert versions["phx-gamma"] == "0.5" and "torchaudio" not in versions
    assert versions["torch"] == "2.13.0"
    assert [c.action for c in plan(desired, sw_layout)] == ["unchanged"]


def test_transitive_torch_conflict_is_rolled_back(
    software_env: Path, sw_layout: Layout, sw_repos: Path, monkeypatch
) -> None:
    for installer in ("uv", "pip"):
        monkeypatch.setenv("PHOENIX_INSTALLER", installer)
        repo = node_repo(sw_repos, f"needs-old-torch-{installer}", requirements="phx-oldtorch\n")
        results = run_apply(desired_nodes(NodeSpec(url=repo.url, ref="main")), sw_layout)
        assert [r.ok for r in results] == [False], installer
        assert "torch" in results[0].message and "2.13.0" in results[0].message, results[0].message
        versions = installed(sw_layout)
        assert versions["torch"] == "2.13.0"
        assert "phx-oldtorch" not in versions, installer


def test_dependency_on_image_torch_does_not_reinstall_it(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    repo = node_repo(sw_repos, "uses-torch", requirements="phx-usestorch\ntorch\n")
    assert [r.ok for r in run_apply(desired_nodes(NodeSpec(url=repo.url)), sw_layout)] == [True]
    dists = pyenv.installed_distributions(pyenv.venv_python(sw_layout))
    assert dists.dists["phx-usestorch"].in_env
    assert not dists.dists["torch"].in_env  # still the image's, not a copy in the venv


def test_failed_clone_leaves_nothing_and_names_node_and_url(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    good = node_repo(sw_repos, "fine-node")
    missing = (sw_repos / "does-not-exist").as_uri()
    desired = desired_nodes(NodeSpec(url=missing, ref="main"), NodeSpec(url=good.url, ref="main"))
    results = run_apply(desired, sw_layout)
    assert [r.ok for r in results] == [False, True]
    assert "node does-not-exist" in results[0].message and missing in results[0].message
    assert not (sw_layout.custom_nodes / "does-not-exist").exists()
    assert list(sw_layout.staging.iterdir()) == []


def test_unknown_ref_fails_without_a_directory(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    repo = node_repo(sw_repos, "reffy")
    results = run_apply(desired_nodes(NodeSpec(url=repo.url, ref="v9.9")), sw_layout)
    assert not results[0].ok and "v9.9" in results[0].message
    assert not (sw_layout.custom_nodes / "reffy").exists()


def test_branch_or_no_ref_is_warned_as_unpinned(
    software_env: Path, sw_layout: Layout, sw_repos: Path, caplog
) -> None:
    repo = node_repo(sw_repos, "floaty")
    desired = desired_nodes(NodeSpec(url=repo.url))
    assert plan(desired, sw_layout)[0].details["warning"].startswith("unpinned")
    results = run_apply(desired, sw_layout)
    assert results[0].ok and "unpinned" in results[0].message
    assert "floaty is unpinned" in caplog.text


def test_local_modifications_are_refused_unless_forced(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    repo = node_repo(sw_repos, "edited")
    repo.tag("v1")
    repo.commit({"__init__.py": "NODE_CLASS_MAPPINGS = {'v': 2}\n"}, "v2")
    repo.tag("v2")
    assert run_apply(desired_nodes(NodeSpec(url=repo.url, ref="v1")), sw_layout)[0].ok
    (sw_layout.custom_nodes / "edited" / "__init__.py").write_text("# my local hack\n")
    desired = desired_nodes(NodeSpec(url=repo.url, ref="v2"))
    refused = run_apply(desired, sw_layout)[0]
    assert not refused.ok and "local modifications" in refused.message
    assert (sw_layout.custom_nodes / "edited" / "__init__.py").read_text() == "# my local hack\n"
    assert run_apply(desired, sw_layout, force=True)[0].ok
    assert "'v': 2" in (sw_layout.custom_nodes / "edited" / "__init__.py").read_text()


#: Planted in Phoenix's environment: no child started through proc.run may inherit them.
PLANTED_SECRETS = {
    "HUGGINGFACE_TOKEN": "hf_planted_hub_token_0001",
    "HF_TOKEN": "hf_planted_alias_token_0002",
    "HUGGING_FACE_HUB_TOKEN": "hf_planted_legacy_0003",
    "CIVITAI_TOKEN": "civitai_planted_token_0004",
    "RUNPOD_API_KEY": "rpa_planted_key_0005",
    "FB_PASSWORD": "planted-fb-password-0006",
}


def test_install_py_runs_with_the_venv_python_in_the_node_dir(
    software_env: Path, sw_layout: Layout, sw_repos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in PLANTED_SECRETS.items():
        monkeypatch.setenv(name, value)
    script = (
        "import json, os, pathlib, sys\n"
        "pathlib.Path('installed-by.txt').write_text(sys.prefix)\n"
        "pathlib.Path('environ.json').write_text(json.dumps(dict(os.environ)))\n"
    )
    repo = node_repo(sw_repos, "scripted", **{"install.py": script})
    assert run_apply(desired_nodes(NodeSpec(url=repo.url, ref="main")), sw_layout)[0].ok
    marker = sw_layout.custom_nodes / "scripted" / "installed-by.txt"
    assert Path(marker.read_text()).resolve() == sw_layout.venv.resolve()
    seen = json.loads((sw_layout.custom_nodes / "scripted" / "environ.json").read_text())
    assert "PATH" in seen
    leaked = {k for k, v in PLANTED_SECRETS.items() if k in seen or v in seen.values()}
    assert not leaked, f"install.py inherited {leaked}"

    failing = node_repo(sw_repos, "broken-script", **{"install.py": "raise SystemExit(3)\n"})
    result = run_apply(desired_nodes(NodeSpec(url=failing.url, ref="main")), sw_layout)[0]
    assert not result.ok and "install.py exited 3" in result.message


def test_requirements_change_reinstalls_without_git(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    repo = node_repo(sw_repos, "reqs", requirements="phx-gamma\n")
    desired = desired_nodes(NodeSpec(url=repo.url, ref="main"))
    assert run_apply(desired, sw_layout)[0].ok
    (sw_layout.custom_nodes / "reqs" / "requirements.txt").write_text("phx-gamma\nphx-alpha==1.0\n")
    changes = plan(desired, sw_layout)
    assert changes[0].action == "update" and "requirements" in changes[0].reason
    assert nodes.apply(changes, apply_ctx(sw_layout))[0].ok
    assert installed(sw_layout)["phx-alpha"] == "1.0"


def test_git_never_prompts_for_credentials(sw_layout: Layout) -> None:
    from provisioner.software import gitops

    env = gitops.git_env("https://example.invalid/x.git")
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_ALLOW_PROTOCOL"] == "https:ssh"
    assert gitops.git_env("file:///tmp/x")["GIT_ALLOW_PROTOCOL"] == "https:ssh:file"


def test_existing_unmanaged_checkout_is_adopted(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    repo = node_repo(sw_repos, "adopted")
    sw_layout.custom_nodes.mkdir()
    Repo(sw_repos / "scratch").git(
        "clone", "--quiet", repo.url, str(sw_layout.custom_nodes / "adopted")
    )
    desired = desired_nodes(NodeSpec(url=repo.url, ref="main"))
    changes = plan(desired, sw_layout)
    assert changes[0].action == "update" and "not managed" in changes[0].reason
    assert nodes.apply(changes, apply_ctx(sw_layout))[0].ok
    assert [c.action for c in plan(desired, sw_layout)] == ["unchanged"]


def test_lock_file_commit_wins_over_a_moving_branch(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    repo = node_repo(sw_repos, "locked-node")
    locked = repo.git("rev-parse", "HEAD")
    repo.commit({"nodes.py": "moved = True\n"}, "branch moved on")
    spec = NodeSpec(url=repo.url, ref="main")
    desired = desired_nodes(spec)
    desired = DesiredState(
        desired.manifest,
        nodes=(DesiredNode("node:locked-node", "locked-node", spec, "lock", locked),),
    )
    changes = plan(desired, sw_layout)
    assert "warning" not in changes[0].details
    result = nodes.apply(changes, apply_ctx(sw_layout))[0]
    assert result.ok and "unpinned" not in result.message
    assert load_state(sw_layout).nodes["locked-node"].commit == locked
    assert not (sw_layout.custom_nodes / "locked-node" / "nodes.py").exists()
    assert [c.action for c in plan(desired, sw_layout)] == ["unchanged"]


def test_requirements_with_installer_options_go_through_the_file(
    software_env: Path, wheelhouse: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    reqs = f"--find-links {wheelhouse}\nphx-gamma==0.5  # pinned\n"
    repo = node_repo(sw_repos, "opts-node", requirements=reqs)
    with proc.recording() as calls:
        result = run_apply(desired_nodes(NodeSpec(url=repo.url, ref="main")), sw_layout)[0]
    assert result.ok, result.message
    assert any("-r" in call and call[call.index("-r") + 1].endswith("requirements.txt")
               for call in calls)  # fmt: skip
    assert installed(sw_layout)["phx-gamma"] == "0.5"


def _two_nodes(sw_repos: Path) -> tuple[NodeSpec, NodeSpec]:
    kept = node_repo(sw_repos, "kept-node")
    gone = node_repo(sw_repos, "gone-node", requirements="phx-beta\n")
    return NodeSpec(url=kept.url, ref="main"), NodeSpec(url=gone.url, ref="main")


def test_dropped_node_is_a_delete_removed_only_with_prune(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    kept, gone = _two_nodes(sw_repos)
    assert all(r.ok for r in run_apply(desired_nodes(kept, gone), sw_layout))
    desired = desired_nodes(kept)
    changes = plan(desired, sw_layout)
    assert [(c.action, c.id, c.origin, c.reason) for c in changes] == [
        ("unchanged", "node:kept-node", changes[0].origin, changes[0].reason),
        ("delete", "node:gone-node", "state", "no longer desired; would remove with --prune"),
    ]
    assert changes[1].dest == "custom_nodes/gone-node" and changes[1].source == gone.url + "@main"

    assert nodes.apply(changes, apply_ctx(sw_layout)) == []  # without --prune: nothing
    assert (sw_layout.custom_nodes / "gone-node").is_dir()

    results = nodes.apply(changes, apply_ctx(sw_layout, prune=True))
    assert [(r.id, r.ok) for r in results] == [("node:gone-node", True)]
    assert "removed custom_nodes/gone-node" in results[0].message
    assert not (sw_layout.custom_nodes / "gone-node").exists()
    assert (sw_layout.custom_nodes / "kept-node" / "__init__.py").is_file()
    assert set(load_state(sw_layout).nodes) == {"kept-node"}
    assert installed(sw_layout)["phx-beta"] == "1.0"  # its requirements stay
    assert not list(sw_layout.staging.glob("prune-*"))  # nothing left behind
    assert [c.action for c in plan(desired, sw_layout)] == ["unchanged"]


def test_pruning_keeps_a_changed_checkout_and_forgets_it(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    kept, gone = _two_nodes(sw_repos)
    assert all(r.ok for r in run_apply(desired_nodes(kept, gone), sw_layout))
    folder = sw_layout.custom_nodes / "gone-node"
    (folder / "__init__.py").write_text("# my local hack\n")
    desired = desired_nodes(kept)
    change = plan(desired, sw_layout)[1]
    assert change.action == "delete"  # local edits need git: seen at apply, not in the plan

    result = nodes.apply([change], apply_ctx(sw_layout, prune=True))[0]
    assert result.ok and "kept custom_nodes/gone-node: it has local modifications" in result.message
    assert (folder / "__init__.py").read_text() == "# my local hack\n"
    assert "gone-node" not in load_state(sw_layout).nodes
    assert [c.action for c in plan(desired, sw_layout)] == ["unchanged"]  # forgotten


def test_pruning_a_moved_head_keeps_it_and_force_removes_local_edits(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    kept, gone = _two_nodes(sw_repos)
    third = node_repo(sw_repos, "edited-node")
    edited = NodeSpec(url=third.url, ref="main")
    assert all(r.ok for r in run_apply(desired_nodes(kept, gone, edited), sw_layout))
    Repo(sw_layout.custom_nodes / "gone-node").commit({"x.py": "X = 1\n"}, "my own commit")
    (sw_layout.custom_nodes / "edited-node" / "__init__.py").write_text("# hack\n")
    changes = plan(desired_nodes(kept), sw_layout)
    moved = next(c for c in changes if c.id == "node:gone-node")
    assert "Phoenix placed" in moved.reason and "keeps the folder" in moved.reason

    results = {r.id: r for r in nodes.apply(changes, apply_ctx(sw_layout, force=True, prune=True))}
    assert "kept custom_nodes/gone-node: HEAD is" in results["node:gone-node"].message
    assert (sw_layout.custom_nodes / "gone-node" / "x.py").is_file()  # not even --force
    assert "removed" in results["node:edited-node"].message
    assert not (sw_layout.custom_nodes / "edited-node").exists()
    assert set(load_state(sw_layout).nodes) == {"kept-node"}


def test_pruning_a_node_already_gone_forgets_it(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    import shutil

    kept, gone = _two_nodes(sw_repos)
    assert all(r.ok for r in run_apply(desired_nodes(kept, gone), sw_layout))
    shutil.rmtree(sw_layout.custom_nodes / "gone-node")
    changes = plan(desired_nodes(), sw_layout)
    assert [(c.id, c.action) for c in changes] == [
        ("node:gone-node", "delete"),
        ("node:kept-node", "delete"),
    ]
    assert "already gone" in changes[0].reason
    results = nodes.apply(changes, apply_ctx(sw_layout, prune=True))
    assert [r.ok for r in results] == [True, True] and "already gone" in results[0].message
    assert load_state(sw_layout).nodes == {}
    assert not sw_layout.custom_nodes.joinpath("kept-node").exists()


def test_pruning_keeps_a_replaced_folder_or_link_and_reports_a_failed_removal(
    software_env: Path, sw_layout: Layout, sw_repos: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import shutil

    kept, gone = _two_nodes(sw_repos)
    third = node_repo(sw_repos, "stuck-node")
    stuck = NodeSpec(url=third.url, ref="main")
    assert all(r.ok for r in run_apply(desired_nodes(kept, gone, stuck), sw_layout))
    # kept-node: replaced by a plain folder; gone-node: replaced by a link to a clean checkout
    shutil.rmtree(sw_layout.custom_nodes / "kept-node" / ".git")
    elsewhere = tmp_path / "elsewhere"
    (sw_layout.custom_nodes / "gone-node").rename(elsewhere)
    (sw_layout.custom_nodes / "gone-node").symlink_to(elsewhere)
    changes = plan(desired_nodes(), sw_layout)
    assert all("keeps the folder" in c.reason for c in changes if c.id != "node:stuck-node")

    real_replace = os.replace

    def refuse(src: str | Path, dst: str | Path) -> None:  # root ignores modes: fail by hand
        if Path(src).parent == sw_layout.custom_nodes:
            raise PermissionError(13, "Permission denied", str(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    results = {r.id: r for r in nodes.apply(changes, apply_ctx(sw_layout, force=True, prune=True))}
    for name in ("kept-node", "gone-node"):
        message = results[f"node:{name}"].message
        assert results[f"node:{name}"].ok and "no longer the git checkout" in message, message
    assert (sw_layout.custom_nodes / "gone-node").is_symlink() and (elsewhere / ".git").is_dir()
    assert (sw_layout.custom_nodes / "kept-node" / "__init__.py").is_file()
    failed = results["node:stuck-node"]
    assert (
        not failed.ok
        and "cannot remove" in failed.message
        and "Permission denied" in failed.message
    )
    assert (sw_layout.custom_nodes / "stuck-node" / ".git").is_dir()
    assert set(load_state(sw_layout).nodes) == {"stuck-node"}  # retried by the next --prune


def test_a_node_with_unreadable_requirements_fails_alone_with_its_name(
    software_env: Path, sw_layout: Layout, sw_repos: Path
) -> None:
    good = node_repo(sw_repos, "fine-node")
    bad = node_repo(sw_repos, "latin1-node")
    (bad.path / "requirements.txt").write_bytes(b"caf\xe9-lib\n")  # not UTF-8
    bad.git("add", "-A")
    bad.git("commit", "--quiet", "-m", "latin-1 requirements")
    specs = (NodeSpec(url=good.url, ref="main"), NodeSpec(url=bad.url, ref="main"))
    results = {r.id: r for r in run_apply(desired_nodes(*specs), sw_layout)}
    assert results["node:fine-node"].ok
    failed = results["node:latin1-node"]
    assert not failed.ok and "cannot read requirements.txt of node latin1-node: not UTF-8" in (
        failed.message
    )

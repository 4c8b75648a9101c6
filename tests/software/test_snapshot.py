"""ComfyUI-Manager snapshots: both formats, import with reports, export, and a full round trip."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from ruamel.yaml import YAML

from provisioner import cli
from provisioner.actions import comfyui, nodes, packages
from provisioner.commands.import_snapshot import MAX_SNAPSHOT_BYTES, check_loads
from provisioner.core.errors import ManifestError
from provisioner.core.layout import Layout
from provisioner.manifest.merge import load_desired
from provisioner.manifest.models import Manifest
from provisioner.plan import comfyui as comfyui_plan
from provisioner.plan import nodes as nodes_plan
from provisioner.plan import packages as packages_plan
from provisioner.software.snapshot import (
    GitNode,
    Snapshot,
    dump_snapshot,
    export_snapshot,
    import_snapshot,
    parse_snapshot,
    render_manifest,
)
from provisioner.state.store import State
from tests.support.contexts import apply_ctx, observe_ctx, versions
from tests.support.desired import desired_of
from tests.support.gitrepos import Repo, node_repo
from tests.support.paths import FIXTURES
from tests.support.wheels import build_wheel

SNAPSHOTS = FIXTURES / "snapshots"
JSON_SNAPSHOT = SNAPSHOTS / "2026-11-20_14-02-31_snapshot.json"
YAML_SNAPSHOT = SNAPSHOTS / "2026-11-20_14-05-10_snapshot.yaml"


def load(path: Path) -> Snapshot:
    return parse_snapshot(path.read_text(), path.name)


def test_parse_manager_json() -> None:
    snap = load(JSON_SNAPSHOT)
    assert snap.comfyui == "46dbc2e157298963e40d6b829f68fe2b0d1d7472"
    assert len(snap.git_custom_nodes) == 4
    assert snap.git_custom_nodes["https://github.com/ltdrdata/ComfyUI-Impact-Pack"].disabled
    assert snap.cnr_custom_nodes == {"comfyui-kjnodes": "1.1.0", "rgthree-comfy": "1.0.2507112302"}
    assert snap.file_custom_nodes == ({"filename": "websocket_image_save.py", "disabled": True},)
    assert snap.pips["einops==0.8.1"] == ""
    assert snap.pips["segment_anything"].startswith("git+https://")


def test_parse_manager_yaml_under_custom_nodes() -> None:
    snap = load(YAML_SNAPSHOT)
    assert snap.comfyui == "46dbc2e157298963e40d6b829f68fe2b0d1d7472"
    assert snap.git_custom_nodes["https://github.com/city96/ComfyUI-GGUF"] == GitNode(
        "e8867ea2773bdee8d50eab4ee7818e5d79023b37", False
    )
    assert snap.cnr_custom_nodes == {"comfyui-kjnodes": "1.1.0"}
    assert list(snap.pips) == ["einops==0.8.1", "gguf==0.17.1", "torch==2.8.0+cu128"]


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_dump_and_parse_are_inverse(fmt: str) -> None:
    snap = load(JSON_SNAPSHOT)
    text = dump_snapshot(snap, fmt)
    assert parse_snapshot(text, f"x.{fmt}") == snap
    if fmt == "yaml":
        assert list(YAML(typ="safe").load(text)) == ["custom_nodes"]
    else:
        assert json.loads(text)["git_custom_nodes"]


@pytest.mark.parametrize(
    ("text", "name", "needle"),
    [
        ("[1, 2]", "s.json", "not a ComfyUI-Manager snapshot"),
        ("{not json", "s.json", "not a ComfyUI-Manager snapshot"),
        ('{"models": []}', "s.json", "expected keys comfyui"),
        ('{"comfyui": "x", "git_custom_nodes": []}', "s.json", "git_custom_nodes: expected"),
        (
            '{"git_custom_nodes": {"https://g/x": {"disabled": false}}}',
            "s.json",
            "{hash, disabled}",
        ),
        ("custom_nodes: [", "s.yaml", "not a ComfyUI-Manager snapshot"),
        ("[" * 100_000, "s.json", "nested too deeply"),
    ],
)
def test_bad_snapshots_name_the_file(text: str, name: str, needle: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_snapshot(text, name)
    assert info.value.where == name and needle in info.value.message


def test_import_keeps_what_it_can_and_reports_the_rest() -> None:
    imported = import_snapshot(load(JSON_SNAPSHOT))
    assert imported.comfyui_ref == "46dbc2e157298963e40d6b829f68fe2b0d1d7472"
    assert [n["url"] for n in imported.nodes] == [
        "https://github.com/ltdrdata/ComfyUI-Manager",
        "https://github.com/city96/ComfyUI-GGUF",
        "https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite.git",
    ]
    assert all(len(n["ref"]) == 40 for n in imported.nodes)
    names = {canonicalize_name(Requirement(p).name) for p in imported.packages}
    assert {"einops", "comfyui-frontend-package", "torchsde", "kornia"} <= names
    assert not names & {"torch", "torchvision", "torchaudio", "triton", "nvidia-cublas-cu12"}
    assert not names & {"pip", "setuptools", "segment-anything", "insightface"}
    reports = "\n".join(imported.reports)
    for needle in (
        "ComfyUI-Impact-Pack: disabled",
        "registry node comfyui-kjnodes@1.1.0",
        "registry node rgthree-comfy@1.0.2507112302",
        "websocket_image_save.py",
        "torch==2.8.0+cu128: the image's torch is kept",
        "insightface @ file:///root/wheels",
        "segment_anything @ git+https://",
    ):
        assert needle in reports
    Manifest.model_validate(imported.manifest())


def test_pip_modes() -> None:
    snap = load(JSON_SNAPSHOT)
    everything = import_snapshot(snap, pips="all")
    assert any(p.startswith("segment_anything @ git+https://") for p in everything.packages)
    nothing = import_snapshot(snap, pips="none")
    assert nothing.packages == () and any("--pips none" in r for r in nothing.reports)


def test_import_command_writes_a_valid_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "from-snapshot.yaml"
    assert cli.main(["import-snapshot", str(YAML_SNAPSHOT), "--output", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# imported from ComfyUI-Manager snapshot")
    manifest = Manifest.model_validate(YAML(typ="safe").load(text))
    assert manifest.comfyui.ref == "46dbc2e157298963e40d6b829f68fe2b0d1d7472"
    assert [n.url for n in manifest.nodes] == [
        "https://github.com/city96/ComfyUI-GGUF",
        "https://github.com/ltdrdata/ComfyUI-Manager",
    ]
    assert manifest.packages == ["einops==0.8.1", "gguf==0.17.1"]
    err = capsys.readouterr().err
    assert "registry node comfyui-kjnodes@1.1.0" in err and "2 node(s), 2 package(s)" in err


def test_import_command_missing_file_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["import-snapshot", str(tmp_path / "nope.json")]) == 1
    assert "cannot read snapshot" in capsys.readouterr().err
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe{}")
    assert cli.main(["import-snapshot", str(binary)]) == 1
    err = capsys.readouterr().err
    assert f"{binary}: cannot read snapshot: not UTF-8" in err and "hint:" in err


def test_url_pips_need_all_and_reports_stay_comments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = {
        "comfyui": "a" * 40,
        "git_custom_nodes": {},
        "pips": {
            "foo @ file:///etc": "",
            "bar @ https://example.com/bar.whl": "",
            "bad spec\nversion: 2\nmodels: x": "",
        },
    }
    imported = import_snapshot(parse_snapshot(json.dumps(snap), "s.json"), pips="pinned")
    assert imported.packages == ()
    reports = "\n".join(imported.reports)
    assert "foo @ file:///etc: a local file" in reports
    assert "bar @ https://example.com/bar.whl: URL requirement skipped" in reports
    everything = import_snapshot(parse_snapshot(json.dumps(snap), "s.json"), pips="all")
    assert everything.packages == ("bar @ https://example.com/bar.whl",)
    text = render_manifest(imported, "line one\nline two")
    head = text.split("\nversion:")[0].splitlines()
    assert len(head) > 3 and all(line.startswith("# ") for line in head)
    assert YAML(typ="safe").load(text) == imported.manifest()


def _localise(snap: Snapshot, base: Path, wheelhouse: Path) -> tuple[Snapshot, Repo]:
    """The fixture pointed at local sw_repos (one per URL) and a wheel for each pinned pip."""
    comfy = Repo(base / "ComfyUI")
    comfy_commit = comfy.commit({"main.py": "print('comfy')\n", "requirements.txt": "torch\n"})
    git_nodes = {}
    for url, entry in snap.git_custom_nodes.items():
        name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
        repo = node_repo(base, name)
        git_nodes[repo.url] = GitNode(repo.git("rev-parse", "HEAD"), entry.disabled)
    for key, value in snap.pips.items():
        if not value:
            req = Requirement(key)
            build_wheel(wheelhouse, req.name, str(next(iter(req.specifier)).version))
    local = Snapshot(
        comfy_commit, git_nodes, snap.cnr_custom_nodes, snap.file_custom_nodes, snap.pips
    )
    return local, comfy


def test_round_trip_import_apply_export(
    software_env: Path, wheelhouse: Path, sw_layout: Layout, tmp_path: Path
) -> None:
    local, comfy_repo = _localise(load(JSON_SNAPSHOT), tmp_path / "repos", wheelhouse)
    snap_file = tmp_path / "restored_snapshot.json"
    snap_file.write_text(dump_snapshot(local, "json"))
    manifest_file = tmp_path / "manifest.yaml"
    assert cli.main(["import-snapshot", str(snap_file), "-o", str(manifest_file)]) == 0

    data = YAML(typ="safe").load(manifest_file.read_text())
    checkout = tmp_path / "opt" / "ComfyUI"
    data["comfyui"]["path"] = str(checkout)  # the user's manifest says where ComfyUI lives
    desired = desired_of(Manifest.model_validate(data))
    vers = versions(comfy_repo.url, "0" * 40)  # versions.conf is overridden by the snapshot
    kinds = ((comfyui_plan, comfyui), (packages_plan, packages), (nodes_plan, nodes))
    for kind, action in kinds:
        facts = kind.observe(desired, observe_ctx(sw_layout, vers))  # type: ignore[attr-defined]
        results = action.apply(kind.diff(desired, facts), apply_ctx(sw_layout, vers))  # type: ignore[attr-defined]
        assert all(r.ok for r in results), [r.message for r in results if not r.ok]

    exported = tmp_path / "exported.json"
    argv = ["export-snapshot", "--root", str(sw_layout.root), "--comfyui", str(checkout)]
    assert cli.main([*argv, "-o", str(exported)]) == 0
    back = parse_snapshot(exported.read_text(), exported.name)
    assert back.comfyui == local.comfyui
    enabled = {u: n for u, n in local.git_custom_nodes.items() if not n.disabled}
    assert back.git_custom_nodes == enabled
    exported_pins = {
        (canonicalize_name(Requirement(k).name), str(Requirement(k).specifier)) for k in back.pips
    }
    for requirement in data["packages"]:
        req = Requirement(requirement)
        assert (canonicalize_name(req.name), str(req.specifier)) in exported_pins, requirement
    # and the exported snapshot imports to the same manifest entries again
    again = import_snapshot(back)
    assert again.comfyui_ref == local.comfyui

    def key(n: dict[str, str]) -> str:
        return n["url"]

    assert sorted(again.nodes, key=key) == sorted(data["nodes"], key=key)

    def pins(reqs: list[str] | tuple[str, ...]) -> set[tuple[str, str]]:
        return {
            (canonicalize_name(Requirement(r).name), str(Requirement(r).specifier)) for r in reqs
        }

    assert pins(data["packages"]) <= pins(again.packages)

    yaml_out = tmp_path / "exported.yaml"
    assert cli.main([*argv, "-o", str(yaml_out)]) == 0
    assert parse_snapshot(yaml_out.read_text(), yaml_out.name) == back


HASH = "c" * 40


def _checkout(path: Path, origin: str) -> str:
    repo = Repo(path)
    repo.git("remote", "add", "origin", origin)
    return repo.commit({"__init__.py": "\n"}, "v1")


def test_export_never_writes_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = Layout(tmp_path / "root")
    one = _checkout(layout.custom_nodes / "n1", "https://user:ghp_SECRET@github.com/a/n1")
    two = _checkout(layout.custom_nodes / "n2", "https://github.com/a/n2.git?token=SECRET")
    out = tmp_path / "snap.json"
    argv = ["export-snapshot", "--root", str(layout.root), "--comfyui", str(tmp_path / "no")]
    assert cli.main([*argv, "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "SECRET" not in out.read_text() and "SECRET" not in err
    assert parse_snapshot(out.read_text(), out.name).git_custom_nodes == {
        "https://github.com/a/n1": GitNode(one),
        "https://github.com/a/n2.git": GitNode(two),
    }
    assert "custom_nodes/n1: its origin URL carried a user name or password" in err
    assert "custom_nodes/n2: its origin URL carried a ?query" in err


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("HEAD", b"ref: refs/heads/\xff\n"),
        ("HEAD", b"ref: refs/heads/ma\x00in\n"),
        ("config", b'[remote "origin"]\n  url = https://x/\xff\n'),
        ("commondir", b"\x00"),
    ],
)
def test_export_of_broken_git_metadata_is_a_note(
    tmp_path: Path, name: str, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = Layout(tmp_path / "root")
    _checkout(layout.custom_nodes / "n", "https://github.com/a/n")
    (layout.custom_nodes / "n" / ".git" / name).write_bytes(content)
    comfy = layout.custom_nodes / "n"  # --comfyui at the same broken checkout
    argv = ["export-snapshot", "--root", str(layout.root), "--comfyui", str(comfy)]
    assert cli.main([*argv, "-o", str(tmp_path / "s.json")]) == 0
    snap = parse_snapshot((tmp_path / "s.json").read_text(), "s.json")
    assert snap.git_custom_nodes == {}
    assert "custom_nodes/n: no readable HEAD commit and origin URL" in capsys.readouterr().err
    if name != "config":
        assert snap.comfyui is None


def test_export_of_a_gitdir_file_with_a_nul_byte(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "root")
    (layout.custom_nodes / "n").mkdir(parents=True)
    (layout.custom_nodes / "n" / ".git").write_bytes(b"gitdir: /x\x00y\n")
    snap, notes = export_snapshot(layout, tmp_path / "no", State(), Path(sys.executable))
    assert snap.git_custom_nodes == {} and any("custom_nodes/n:" in n for n in notes)


def test_a_commit_with_a_trailing_newline_is_not_imported() -> None:
    snap = Snapshot(HASH + "\n", {"https://github.com/a/n": GitNode(HASH + "\n")}, {}, (), {})
    imported = import_snapshot(snap)
    assert imported.comfyui_ref is None and imported.nodes == ()
    assert len(imported.reports) == 2 and all("is not a commit" in r for r in imported.reports)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"comfyui": null, "git_custom_nodes": {}, "pips": {"\\ud800": ""}}', "at pips: key"),
        ('{"comfyui": "\\udfff", "git_custom_nodes": {}}', "at comfyui: value"),
        (
            '{"git_custom_nodes": {"https://g/x": {"hash": "a\\ud800"}}}',
            "at git_custom_nodes.https://g/x.hash: value",
        ),
    ],
)
def test_lone_surrogates_are_refused_at_parse_time(
    tmp_path: Path, text: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ManifestError) as info:
        parse_snapshot(text, "s.json")
    assert info.value.where == "s.json" and needle in info.value.message
    assert "is not valid Unicode" in info.value.message and info.value.hint
    snap = tmp_path / "s.json"
    snap.write_text(text)
    assert cli.main(["import-snapshot", str(snap)]) == 1
    assert f"{snap}: {needle}" in capsys.readouterr().err


def test_import_refuses_a_fifo_a_directory_and_a_huge_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # with no writer, reading it would block forever
    assert cli.main(["import-snapshot", str(fifo)]) == 1
    assert f"{fifo}: cannot read snapshot: a pipe or device" in capsys.readouterr().err
    assert cli.main(["import-snapshot", str(tmp_path)]) == 1
    assert "cannot read snapshot: a directory" in capsys.readouterr().err
    huge = tmp_path / "huge.json"
    with huge.open("wb") as fh:
        fh.truncate(MAX_SNAPSHOT_BYTES + 1)
    assert cli.main(["import-snapshot", str(huge)]) == 1
    err = capsys.readouterr().err
    assert f"{huge}: cannot read snapshot: file is {MAX_SNAPSHOT_BYTES + 1} bytes" in err


BAD_NODES = {
    "https://user:ghp_SECRET@github.com/a/creds": "credentials inside a node URL",
    "https://github.com/a/query?token=SECRET": "takes no ?query",
    "https://github.com/a/..": "cannot derive a folder name",
    "https://github.com/a/we!rd": "cannot derive a folder name",
    "https://github.com/b/dup.git": "custom_nodes/dup is already taken by https://github.com/a/dup",
    "https://github.com/a/suffix@v1": "an '@ref' suffix",
    "https://github.com/a/space\n": "space around it",
    "http://github.com/a/plain": "plain http://",
}


def test_import_skips_nodes_the_manifest_would_reject(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = ["https://github.com/a/dup", *BAD_NODES, "ssh://git@host/a/ok"]
    snap = {"git_custom_nodes": {u: {"hash": HASH} for u in urls}}
    snap["pips"] = {"foo==1.0": "", "Foo==2.0": "", "bar": "https://u:SECRET@example.com/b.whl"}
    path, out = tmp_path / "s.json", tmp_path / "m.yaml"
    path.write_text(json.dumps(snap))
    assert cli.main(["import-snapshot", str(path), "--pips", "all", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    reports = [line for line in err.splitlines() if "not imported:" in line]
    assert len(reports) == len(BAD_NODES) + 2, reports
    for url, needle in BAD_NODES.items():
        assert any(needle in line for line in reports), (url, needle)
    assert "foo is already imported as 'foo==1.0'" in err
    assert "SECRET" not in err and "SECRET" not in out.read_text()
    desired, _ = load_desired(str(out), {})  # what phoenix validate does
    assert [n.spec.url for n in desired.nodes] == [
        "https://github.com/a/dup",
        "ssh://git@host/a/ok",
    ]
    assert [p.requirement for p in desired.packages] == ["foo==1.0"]


def test_a_manifest_phoenix_would_reject_is_never_written(tmp_path: Path) -> None:
    rendered = (
        "version: 1\nnodes:\n"
        f"- url: https://github.com/a/dup\n  ref: {HASH}\n"
        f"- url: https://github.com/b/dup\n  ref: {HASH}\n"
    )
    with pytest.raises(ManifestError) as info:
        check_loads(rendered, "out.yaml", "s.json")
    assert info.value.where == "s.json" and "would be rejected, so none was written" in (
        info.value.message
    )
    assert "out.yaml:5:" in info.value.message and "requested twice" in info.value.message
    check_loads(f"version: 1\nnodes:\n- url: https://github.com/a/dup\n  ref: {HASH}\n", "o", "s")
    with pytest.raises(ManifestError, match="would be 1048"):
        check_loads("version: 1\n" + "#" * 1024 * 1024, "out.yaml", "s.json")

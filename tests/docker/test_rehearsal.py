"""docker/rehearsal_checks.py and docker/rehearsal_inputs.py: the rules the image rehearsal
judges by, on small real files, and the local inputs it builds from. The rehearsal itself
(docker/rehearse.py: buildah, podman, root) runs as its own step of .ci/run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from provisioner.manifest.load import load_manifest_text
from provisioner.manifest.models import Manifest, URLModel

DOCKER = Path(__file__).resolve().parents[2] / "docker"
sys.path.insert(0, str(DOCKER))

import rehearsal_checks as checks  # noqa: E402
import rehearsal_inputs as inputs  # noqa: E402

SECRET = b"hf_planted0123456789abcdef"


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as layer:
        for name, data in files.items():
            _add(layer, name, data)
    return buf.getvalue()


def _docker_archive(path: Path, layers: list[bytes], history: list[dict[str, object]]) -> None:
    config = json.dumps({"history": history}).encode()
    names = [f"{i:02d}/layer.tar" for i in range(len(layers))]
    manifest = json.dumps([{"Config": "config.json", "Layers": names}]).encode()
    with tarfile.open(path, "w") as archive:
        _add(archive, "manifest.json", manifest)
        _add(archive, "config.json", config)
        for name, data in zip(names, layers, strict=True):
            _add(archive, name, data)


@pytest.mark.parametrize("block", [1, 5, 7, 1 << 20])
def test_contains_any_finds_a_needle_across_block_seams(block: int) -> None:
    data = b"x" * 13 + SECRET + b"y" * 3
    assert checks.contains_any(io.BytesIO(data), [SECRET, b"absent"], block=block) == {SECRET}
    assert checks.contains_any(io.BytesIO(b"x" * 40), [SECRET], block=block) == set()


def test_secret_in_a_nested_layer_is_found_and_layers_are_listed(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    clean = _layer({"etc/hostname": b"pod\n"})
    dirty = _layer({"root/.bash_history": b"export HF_TOKEN=" + SECRET + b"\n"})
    history = [
        {"created_by": "ADD base"},
        {"created_by": "ENV X=1", "empty_layer": True},
        {"created_by": "RUN echo"},
    ]
    _docker_archive(archive, [clean, dirty], history)
    assert checks.secrets_in_archive(archive, [SECRET]) == {"01/layer.tar": {SECRET}}
    layers = checks.layers_of_archive(archive)
    assert [(lay.size, lay.created_by) for lay in layers] == [
        (len(clean), "ADD base"),
        (len(dirty), "RUN echo"),
    ]


def test_secrets_in_files_reads_regular_files_only(tmp_path: Path) -> None:
    (tmp_path / "log").write_bytes(b"token " + SECRET)
    (tmp_path / "ok").write_bytes(b"nothing")
    (tmp_path / "link").symlink_to(tmp_path / "log")
    found = checks.secrets_in_files(sorted(tmp_path.iterdir()), [SECRET])
    assert found == {str(tmp_path / "log"): {SECRET}}


def test_caches_apt_lists_and_temp_files_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for path in ("root/.cache/pip/http/x", "home/sduser/.cache/uv/y", "var/lib/apt/lists/z",
                 "tmp/filebrowser.tar.gz"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("1")
    (root / "var/lib/apt/lists/partial").mkdir()
    found = checks.caches_in(root)
    assert "root/.cache" in found and "root/.cache/pip" in found
    assert "home/sduser/.cache/uv" in found
    assert any(f.startswith("var/lib/apt/lists (1 files)") for f in found)
    assert "tmp/ (filebrowser.tar.gz)" in found
    empty = tmp_path / "clean"
    (empty / "var/lib/apt/lists/partial").mkdir(parents=True)
    (empty / "tmp").mkdir()
    assert checks.caches_in(empty) == []


def test_stray_pyc_allows_only_phoenix_compiled_modules(tmp_path: Path) -> None:
    pkg = tmp_path / "opt/phoenix/provisioner"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "cli.py").write_text("")
    (pkg / "__pycache__/cli.cpython-311.pyc").write_bytes(b"")
    assert checks.stray_pyc(tmp_path) == []
    (pkg / "__pycache__/gone.cpython-311.pyc").write_bytes(b"")  # its source was removed
    (tmp_path / "opt/ComfyUI/__pycache__").mkdir(parents=True)
    (tmp_path / "opt/ComfyUI/__pycache__/main.cpython-311.pyc").write_bytes(b"")
    (tmp_path / "workspace").mkdir()
    (tmp_path / "workspace/x.pyc").write_bytes(b"")
    assert checks.stray_pyc(tmp_path) == [
        "opt/ComfyUI/__pycache__/main.cpython-311.pyc",
        "opt/phoenix/provisioner/__pycache__/gone.cpython-311.pyc",
        "workspace/x.pyc",
    ]


def test_build_tools_count_only_when_the_base_lacks_them(tmp_path: Path) -> None:
    image, base = tmp_path / "image", tmp_path / "base"
    for root in (image, base):
        (root / "usr/bin").mkdir(parents=True)
    for tool in ("gcc", "make", "git"):
        (image / "usr/bin" / tool).write_text("")
    (base / "usr/bin/make").write_text("")
    assert checks.build_tools_added(image, base) == ["/usr/bin/gcc"]


def test_modes_a_umask_of_077_would_not_make() -> None:
    entries = [("/w/a", 0o100600), ("/w/d", 0o040700), ("/w/b", 0o100644), ("/w/l", 0o120777)]
    assert checks.group_or_world_accessible(entries) == ["/w/b"]


def test_fake_comfyui_repo_serves_its_commit_by_hash_as_the_dockerfile_fetches(
    tmp_path: Path,
) -> None:
    bare = tmp_path / "comfyui.git"
    commit = inputs.fake_comfyui_repo(bare)
    clone = tmp_path / "ComfyUI"
    for argv in (
        ["git", "init", "-q", str(clone)],
        ["git", "-C", str(clone), "remote", "add", "origin", bare.as_uri()],
        ["git", "-C", str(clone), "fetch", "-q", "--depth", "1", "origin", commit],
        ["git", "-C", str(clone), "checkout", "-q", "--detach", "FETCH_HEAD"],
    ):
        subprocess.run(argv, check=True, capture_output=True)
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert head == commit
    assert (clone / "requirements.txt").read_text() == inputs.FAKE_COMFYUI_REQUIREMENTS
    assert (clone / "comfy" / "cli_args.py").is_file()


def test_fake_filebrowser_archive_is_release_shaped_and_hashed(tmp_path: Path) -> None:
    archive = tmp_path / "linux-amd64-filebrowser.tar.gz"
    digest = inputs.fake_filebrowser_archive(archive)
    assert digest == inputs.sha256_file(archive) and len(digest) == 64
    assert inputs.fake_filebrowser_archive(tmp_path / "again.tar.gz") == digest  # reproducible
    with tarfile.open(archive) as tar:
        (member,) = tar.getmembers()
        assert member.name == "filebrowser" and member.mode & 0o111
        head = tar.extractfile(member).read(30)  # type: ignore[union-attr]
    assert head.startswith(b"#!/usr/bin/env python3")


def test_simple_index_links_every_wheel_with_its_hash(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("ruamel.yaml-0.18.15-py3-none-any.whl", "Jinja2-3.1.6-py3-none-any.whl"):
        (wheels / name).write_bytes(name.encode())
    assert inputs.write_simple_index(wheels, tmp_path / "simple") == 2
    page = (tmp_path / "simple" / "ruamel-yaml" / "index.html").read_text()
    sha = inputs.sha256_file(wheels / "ruamel.yaml-0.18.15-py3-none-any.whl")
    assert f'href="../../wheels/ruamel.yaml-0.18.15-py3-none-any.whl#sha256={sha}"' in page
    assert 'href="jinja2/"' in (tmp_path / "simple" / "index.html").read_text()
    with pytest.raises(ValueError):
        inputs.project_of("README.md")


def test_rehearsal_manifest_is_valid_and_asks_for_the_fake_commit() -> None:
    text = inputs.manifest_text(
        "file:///mnt/phoenix-inputs/comfyui.git", "a" * 40,
        "http://127.0.0.1:4321/rehearsal-tiny.safetensors", "b" * 64,
    )
    manifest = Manifest.model_validate(load_manifest_text(text, "rehearsal.yaml").data)
    assert manifest.comfyui.ref == "a" * 40
    (model,) = manifest.models
    assert isinstance(model, URLModel) and model.sha256 == "b" * 64

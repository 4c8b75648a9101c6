"""Local stand-ins for every input the Dockerfile fetches, for the image rehearsal.

Stdlib only (runs on the build host). Each function makes one input in a folder the build
mounts read-only; nothing here touches the repository or the network, except
:func:`download_wheels`, which asks pip (and so the host's configured package index).

* :func:`fake_comfyui_repo`: tests/fixtures/fake_comfyui committed into a bare git repo that
  lets a client fetch a commit by its hash (as GitHub does); the commit is passed as
  ``COMFYUI_COMMIT`` and the Dockerfile still checks ``HEAD`` against it.
* :func:`fake_filebrowser_archive`: tests/fixtures/fake_filebrowser as
  ``linux-amd64-filebrowser.tar.gz`` with one executable member ``filebrowser``; its real
  SHA256 is passed as ``FILEBROWSER_SHA256`` and the Dockerfile still checks it.
* :func:`download_wheels` + :func:`write_simple_index`: a PEP 503 index of wheels for
  ``PIP_INDEX_URL`` (file://), so the build's pip needs no network and no TLS trust.
* :func:`model_file` + :func:`manifest_text`: a tiny model file for a loopback URL source and
  the manifest that asks for it.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import io
import os
import re
import secrets
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKE_COMFYUI = ROOT / "tests" / "fixtures" / "fake_comfyui"
FAKE_FILEBROWSER = ROOT / "tests" / "fixtures" / "fake_filebrowser" / "filebrowser.py"

#: ComfyUI's requirements.txt in the fake checkout: torch (installed, kept), torchaudio (not in
#: the image: docker/constraints.py must drop it, as it does for the real file) and one
#: ordinary package that the build installs from the index.
FAKE_COMFYUI_REQUIREMENTS = "torch\ntorchaudio\nsafetensors\n"

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Phoenix rehearsal",
    "GIT_AUTHOR_EMAIL": "rehearsal@phoenix.invalid",
    "GIT_COMMITTER_NAME": "Phoenix rehearsal",
    "GIT_COMMITTER_EMAIL": "rehearsal@phoenix.invalid",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z",
}


def sha256_file(path: Path) -> str:
    """Hex SHA256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **_GIT_ENV}
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def fake_comfyui_repo(dest: Path) -> str:
    """Commit the fake ComfyUI (plus a requirements.txt) into bare repo ``dest``; its commit."""
    work = dest.with_name(dest.name + ".work")
    work.mkdir(parents=True)
    for source in sorted(FAKE_COMFYUI.rglob("*")):
        if "__pycache__" in source.parts or source.suffix == ".pyc" or not source.is_file():
            continue
        target = work / source.relative_to(FAKE_COMFYUI)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    (work / "requirements.txt").write_text(FAKE_COMFYUI_REQUIREMENTS, encoding="utf-8")
    _git("init", "-q", "-b", "master", cwd=work)
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "fake ComfyUI for the image rehearsal", cwd=work)
    commit = _git("rev-parse", "HEAD", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(dest), cwd=work.parent)
    # the Dockerfile fetches the pinned commit by hash, as from GitHub
    _git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=dest)
    return commit


def fake_filebrowser_archive(dest: Path) -> str:
    """Write the FileBrowser release-shaped archive; its SHA256."""
    script = FAKE_FILEBROWSER.read_bytes()
    if not script.startswith(b"#!"):
        script = b"#!/usr/bin/env python3\n" + script
    info = tarfile.TarInfo("filebrowser")
    info.size, info.mode, info.mtime = len(script), 0o755, 1735689600
    # gzip's header carries a time: fixed, so the archive and its SHA256 are the same each run
    with (
        dest.open("wb") as raw,
        gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as archive,
    ):
        archive.addfile(info, io.BytesIO(script))
    return sha256_file(dest)


def download_wheels(
    dest: Path, requirements: Sequence[str], constraints: Sequence[str]
) -> list[Path]:
    """``pip download`` binary wheels of ``requirements`` (and their dependencies) into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    pins = dest.parent / "rehearsal-constraints.txt"
    pins.write_text("".join(f"{line}\n" for line in constraints), encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary",
            ":all:",
            "--dest",
            str(dest),
            "-c",
            str(pins),
            *requirements,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pip download failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return sorted(dest.glob("*.whl"))


_WHEEL_NAME = re.compile(r"^([A-Za-z0-9_.]+?)-\d")


def project_of(wheel_name: str) -> str:
    """PEP 503 normalized project name of a wheel file name."""
    match = _WHEEL_NAME.match(wheel_name)
    if not match:
        raise ValueError(f"not a wheel file name: {wheel_name}")
    return re.sub(r"[-_.]+", "-", match[1]).lower()


def write_simple_index(wheels: Path, index: Path) -> int:
    """A PEP 503 simple index under ``index`` linking the wheels in ``wheels``; projects."""
    projects: dict[str, list[Path]] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        projects.setdefault(project_of(wheel.name), []).append(wheel)
    for name, files in projects.items():
        folder = index / name
        folder.mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="{html.escape(os.path.relpath(f, folder))}#sha256={sha256_file(f)}">'
            f"{html.escape(f.name)}</a>\n"
            for f in files
        )
        (folder / "index.html").write_text(
            f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n"
        )
    top = "".join(f'<a href="{n}/">{n}</a>\n' for n in sorted(projects))
    (index / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{top}</body></html>\n")
    return len(projects)


def model_file(dest: Path, size: int = 64 * 1024) -> str:
    """A small file of random bytes standing in for a model; its SHA256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(secrets.token_bytes(size))
    return sha256_file(dest)


def manifest_text(comfyui_repo: str, comfyui_commit: str, model_url: str, sha256: str) -> str:
    """The mounted manifest: the fake ComfyUI's commit (so nothing is fetched) and one model."""
    return (
        "version: 1\n"
        "comfyui:\n"
        f"  repo: {comfyui_repo}\n"
        f"  ref: {comfyui_commit}\n"
        "models:\n"
        f"  - url: {model_url}\n"
        f"    sha256: {sha256}\n"
        "    type: checkpoints\n"
    )

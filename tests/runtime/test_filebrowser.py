"""FileBrowser credentials and service spec: the password never in argv or a file."""

from __future__ import annotations

import sys
from pathlib import Path

import bcrypt
import pytest

from provisioner.manifest.models import FileBrowser
from provisioner.runtime.filebrowser import (
    binary_version,
    credentials,
    filebrowser_service,
    find_binary,
    generate_password,
)
from tests.support.paths import FIXTURES

FAKE = FIXTURES / "fake_filebrowser" / "filebrowser.py"


def test_generated_password_is_long_and_random() -> None:
    first, second = generate_password(), generate_password()
    assert len(first) >= 24 and first != second and first.isalnum()
    with pytest.raises(ValueError):
        generate_password(12)


def test_credentials_prefer_the_user_password() -> None:
    mine = credentials("admin", "my-own-password")
    assert (mine.password, mine.generated) == ("my-own-password", False)
    made = credentials("admin", None)
    assert made.generated and len(made.password) >= 24
    assert made.password not in repr(made)


def test_service_spec_carries_only_a_hash(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "filebrowser.db").write_text("stale database from the last start")
    creds = credentials("phoenix", "hunter2-but-longer")
    base = {"PATH": "/bin", "HUGGINGFACE_TOKEN": "hf_x", "FB_PASSWORD": "hunter2-but-longer"}
    spec = filebrowser_service(
        "/usr/local/bin/filebrowser", FileBrowser(port=8090), tmp_path, run_dir, creds, base
    )
    assert not (run_dir / "filebrowser.db").exists()  # quick setup runs again at start
    assert "hunter2" not in " ".join(spec.argv)
    assert spec.argv[spec.argv.index("--root") + 1] == str(tmp_path)
    assert spec.argv[spec.argv.index("--port") + 1] == "8090"
    assert spec.env["FB_USERNAME"] == "phoenix" and "HUGGINGFACE_TOKEN" not in spec.env
    assert bcrypt.checkpw(b"hunter2-but-longer", spec.env["FB_PASSWORD"].encode())
    assert spec.probe_url == "http://127.0.0.1:8090/health"


def test_binary_lookup_and_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_binary() is None
    script = tmp_path / "filebrowser"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} "$@"\n')
    script.chmod(0o700)
    assert find_binary() == str(script)
    assert binary_version(str(script)) == "File Browser v0.0.0-fake/phoenix-tests"
    assert binary_version(str(tmp_path / "missing")) is None


def test_version_probe_never_sees_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in dumps its environment; no planted token or password reaches it."""
    planted = {
        "HUGGINGFACE_TOKEN": "hf_planted_token_1234",
        "HF_TOKEN": "hf_planted_alias_5678",
        "CIVITAI_TOKEN": "civitai_planted_9012",
        "RUNPOD_API_KEY": "rpa_planted_3456",
        "FB_PASSWORD": "planted-fb-password",
    }
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    dump = tmp_path / "environ.txt"
    script = tmp_path / "filebrowser"
    script.write_text(
        f"#!{sys.executable}\nimport os, sys\n"
        f"open({str(dump)!r}, 'w').write(repr(dict(os.environ)))\n"
        "print('File Browser v9.9.9/dump')\n"
    )
    script.chmod(0o700)
    assert binary_version(str(script)) == "File Browser v9.9.9/dump"
    seen = dump.read_text()
    assert "PATH" in seen
    for name, value in planted.items():
        assert name not in seen and value not in seen

"""Hardening, secret scrubbing, the service allowlist, and the drop-to-user decision."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.core.redact import forget_secrets, redact
from provisioner.runtime.system import (
    UserEntry,
    chown_tree,
    decide_privileges,
    lookup_user,
    scrub_secret_env,
    service_env,
)


def test_harden_in_a_child_process(tmp_path: Path) -> None:
    """Hardening is process-wide, so check it in a fresh interpreter and its own child."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bash_history").write_text("secret command")
    (home / ".python_history").write_text("secret")
    code = f"""
import os, resource, subprocess, sys
from pathlib import Path
from provisioner.runtime.system import harden
report = harden(homes=[Path({str(home)!r})])
open({str(tmp_path / "made")!r}, "w").close()
os.mkdir({str(tmp_path / "dir")!r})
child = subprocess.run(["sh", "-c", "ulimit -c; umask"], capture_output=True, text=True)
print(report.removed_histories, os.environ["HISTFILE"], os.environ["PYTHONDONTWRITEBYTECODE"])
print(child.stdout.split())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "/dev/null 1" in out and "['0', '0077']" in out
    assert not (home / ".bash_history").exists() and not (home / ".python_history").exists()
    assert (tmp_path / "made").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "dir").stat().st_mode & 0o777 == 0o700


def test_scrub_registers_and_removes_secrets() -> None:
    env = {"HUGGINGFACE_TOKEN": "hf_abcdef123", "CIVITAI_TOKEN": "civ_987654", "PATH": "/bin"}
    try:
        assert scrub_secret_env(env) == ["HUGGINGFACE_TOKEN", "CIVITAI_TOKEN"]
        assert env == {"PATH": "/bin"}
        assert redact("token hf_abcdef123 and civ_987654") == "token *** and ***"
    finally:
        forget_secrets()


def test_service_env_is_allowlisted() -> None:
    base = {
        "PATH": "/bin",
        "HOME": "/home/sduser",
        "HF_TOKEN": "hf_x",
        "HUGGINGFACE_TOKEN": "hf_y",
        "CIVITAI_TOKEN": "c",
        "FB_PASSWORD": "plain",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "CUDA_VISIBLE_DEVICES": "0",
    }
    env = service_env(base, {"FB_PASSWORD": "$2b$10$hash", "CIVITAI_TOKEN": "sneaky"})
    assert env == {
        "PATH": "/bin",
        "HOME": "/home/sduser",
        "CUDA_VISIBLE_DEVICES": "0",
        "FB_PASSWORD": "$2b$10$hash",
    }
    assert "FB_PASSWORD" not in service_env(base)


def test_privilege_decisions() -> None:
    sd = UserEntry("sduser", 1000, 1000, "/home/sduser")
    assert decide_privileges(0, "sduser", sd).action == "drop"
    stay = decide_privileges(0, "sduser", None)
    assert stay.action == "stay" and "does not exist" in stay.warnings[0]
    assert decide_privileges(1000, "sduser", sd).action == "stay"
    assert decide_privileges(1000, "sduser", sd).warnings == ()
    rootish = decide_privileges(0, "toor", UserEntry("toor", 0, 0, "/root"))
    assert rootish.action == "stay" and rootish.warnings
    assert lookup_user("root") == UserEntry("root", 0, 0, "/root")
    assert lookup_user("no-such-user-phoenix") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_drop_privileges_to_an_existing_unprivileged_user(tmp_path: Path) -> None:
    """The real drop path, in a child process, to `nobody` (no user is created)."""
    nobody = lookup_user("nobody")
    if nobody is None:
        pytest.skip("no 'nobody' user on this machine")
    root = tmp_path / "ws"
    (root / "models").mkdir(parents=True)
    (root / "models" / "m.safetensors").write_bytes(b"w")
    (root / "link").symlink_to("/etc/passwd")
    tmp_path.chmod(0o755)
    code = f"""
import os
from pathlib import Path
from provisioner.runtime.system import decide_privileges, drop_privileges, lookup_user
decision = decide_privileges(os.geteuid(), "nobody", lookup_user("nobody"))
env = {{}}
drop_privileges(decision, [Path({str(root)!r})], env)
print(decision.action, os.getuid(), os.getgid(), os.getgroups(), env["USER"])
try:
    os.setuid(0)
    print("regained root")
except PermissionError:
    print("cannot regain root")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split("\n")[:2] == [
        f"drop {nobody.uid} {nobody.gid} [] nobody",
        "cannot regain root",
    ]
    for path in (root, root / "models", root / "models" / "m.safetensors"):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.uid, nobody.gid)
    assert Path("/etc/passwd").stat().st_uid == 0  # the link was not followed
    assert (root / "link").lstat().st_uid == nobody.uid


def test_chown_tree_counts_only_changes(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    st = tmp_path.stat()
    assert chown_tree(tmp_path, st.st_uid, st.st_gid) == 0
    assert chown_tree(tmp_path / "missing", 0, 0) == 0


def test_secret_names_come_from_the_env_table_once() -> None:
    """proc's and the runtime's secret lists are the table's secret column + foreign ones."""
    from provisioner.manifest.envmap import ENV_VARS, FOREIGN_SECRETS
    from provisioner.runtime import system
    from provisioner.software import proc

    table = {v.name for v in ENV_VARS if v.secret}
    assert {"HUGGINGFACE_TOKEN", "HF_TOKEN", "CIVITAI_TOKEN", "FB_PASSWORD"} <= table
    assert "RUNPOD_API_KEY" in FOREIGN_SECRETS and not table & set(FOREIGN_SECRETS)
    assert proc.SECRET_VARS == set(system.SECRET_ENV_NAMES) == table | set(FOREIGN_SECRETS)
    assert set(system.TOKEN_ENV_NAMES) == proc.SECRET_VARS - {"FB_PASSWORD"}


def test_foreign_secrets_are_scrubbed_and_never_reach_a_service() -> None:
    env = {"PATH": "/bin", "RUNPOD_API_KEY": "rpa_secret_value", "HUGGING_FACE_HUB_TOKEN": "hf_z"}
    try:
        assert service_env(env, {"RUNPOD_API_KEY": "again"}) == {"PATH": "/bin"}
        assert sorted(scrub_secret_env(env)) == ["HUGGING_FACE_HUB_TOKEN", "RUNPOD_API_KEY"]
        assert env == {"PATH": "/bin"} and redact("key rpa_secret_value") == "key ***"
    finally:
        forget_secrets()

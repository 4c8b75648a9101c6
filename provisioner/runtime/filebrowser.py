"""FileBrowser on the workspace: argv, environment and credentials.

FileBrowser bootstraps its database on first start ("quick setup") from ``FB_USERNAME`` and
``FB_PASSWORD``, where the password is a **bcrypt hash**. Phoenix gives it the hash through the
service's own environment, never the password, never in argv; the database lives in
``.phoenix/run/`` and is recreated at every start so a changed ``FB_PASSWORD`` takes effect.
A generated password is shown once on the console and written nowhere else.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import string
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from provisioner.manifest.models import FileBrowser
from provisioner.runtime.services import RestartPolicy, ServiceSpec
from provisioner.runtime.system import service_env

log = logging.getLogger("phoenix.filebrowser")

PASSWORD_LENGTH = 28
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Credentials:
    """FileBrowser's login. ``generated`` passwords are printed once at start."""

    username: str
    password: str
    generated: bool

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***, generated={self.generated})"


def generate_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password of letters and digits (``length`` ≥ 24)."""
    if length < 24:
        raise ValueError("FileBrowser passwords are at least 24 characters")
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def credentials(username: str, password: str | None) -> Credentials:
    """The user's ``FB_PASSWORD`` when set, else a generated one."""
    if password:
        return Credentials(username, password, False)
    return Credentials(username, generate_password(), True)


def hash_password(password: str) -> str:
    """The bcrypt hash FileBrowser stores and accepts for quick setup."""
    import bcrypt  # only when FileBrowser runs

    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=10)).decode("ascii")


def find_binary(name: str = "filebrowser") -> str | None:
    """Path of the FileBrowser binary on ``PATH``, or ``None``."""
    return shutil.which(name)


def binary_version(binary: str, environ: Mapping[str, str] | None = None) -> str | None:
    """``filebrowser version`` output (first line), or ``None`` when it cannot be read.

    The binary runs with the service allowlist environment of ``environ`` (default: this
    process's), so it never sees a token.
    """
    env = service_env(os.environ if environ is None else environ)
    try:
        out = subprocess.run(
            [binary, "version"], capture_output=True, text=True, timeout=5, check=False, env=env
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = (out.stdout or out.stderr).strip().splitlines()
    return line[0] if line else None


def filebrowser_service(
    binary: str,
    config: FileBrowser,
    root: Path,
    run_dir: Path,
    creds: Credentials,
    base_env: Mapping[str, str],
    address: str = "0.0.0.0",
) -> ServiceSpec:
    """The FileBrowser service: root = workspace, fresh database in ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    database = run_dir / "filebrowser.db"
    database.unlink(missing_ok=True)
    argv = (
        binary,
        "--database", str(database),
        "--root", str(root),
        "--address", address,
        "--port", str(config.port),
        "--log", "stdout",
    )  # fmt: skip
    env = service_env(
        base_env,
        {"FB_USERNAME": creds.username, "FB_PASSWORD": hash_password(creds.password)},
    )
    return ServiceSpec(
        name="filebrowser",
        argv=argv,
        env=env,
        cwd=str(run_dir),
        probe_url=f"http://127.0.0.1:{config.port}/health",
        restart=RestartPolicy(max_restarts=5),
    )

"""Process hardening, secret handling in the environment, and dropping root.

``phoenix run`` calls :func:`harden` first: no core dumps, umask 077, no shell history, no
bytecode files. Tokens are read once into :class:`~provisioner.manifest.desired.Secrets`,
registered for redaction and removed from ``os.environ`` (:func:`scrub_secret_env`); services
get :func:`service_env`, an allowlisted environment that can never carry a token.
"""

from __future__ import annotations

import logging
import os
import pwd
import resource
import sys
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from provisioner.core.redact import register_secret
from provisioner.manifest.envmap import SECRET_NAMES

log = logging.getLogger("phoenix.system")

#: Environment variables that hold credentials (the env table's secrets and foreign ones such
#: as RUNPOD_API_KEY). Read once, registered for redaction, then removed from the environment.
SECRET_ENV_NAMES: tuple[str, ...] = SECRET_NAMES

#: The API tokens among them: never in any child's environment. (FileBrowser's own
#: ``FB_PASSWORD`` may be set by Phoenix in a service's env: it then carries a bcrypt hash.)
TOKEN_ENV_NAMES: tuple[str, ...] = tuple(n for n in SECRET_NAMES if n != "FB_PASSWORD")

#: What a service may inherit from Phoenix's environment; everything else is dropped.
SERVICE_ENV_ALLOWLIST = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_MODULE_LOADING",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "PYTORCH_CUDA_ALLOC_CONF",
    "HISTFILE",
    "HISTSIZE",
    "PYTHONDONTWRITEBYTECODE",
)

#: Shell and REPL history files removed at start and at cleanup.
HISTORY_FILES = (
    ".bash_history",
    ".zsh_history",
    ".sh_history",
    ".history",
    ".python_history",
    ".node_repl_history",
    ".lesshst",
    ".wget-hsts",
    ".viminfo",
)


@dataclass(frozen=True)
class HardeningReport:
    """What :func:`harden` did, for the start banner and ``/status``."""

    core_limit: tuple[int, int]
    umask: int
    removed_histories: tuple[str, ...] = ()


def history_files(homes: Iterable[Path]) -> list[Path]:
    """History files that may exist under each home directory."""
    return [home / name for home in homes for name in HISTORY_FILES]


def default_homes(users: Iterable[str] = ()) -> list[Path]:
    """``$HOME`` (root's when started as root) and the homes of ``users`` (the service user)."""
    homes = {Path(os.environ.get("HOME") or "/root")}
    for name in users:
        entry = lookup_user(name)
        if entry is not None:
            homes.add(Path(entry.home))
    return sorted(homes)


def harden(
    env: MutableMapping[str, str] | None = None, homes: Sequence[Path] | None = None
) -> HardeningReport:
    """Apply process-wide hardening; children inherit all of it (rlimit, umask, env)."""
    target = os.environ if env is None else env
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.umask(0o077)
    target["HISTFILE"] = "/dev/null"
    target["HISTSIZE"] = "0"
    target["PYTHONDONTWRITEBYTECODE"] = "1"
    sys.dont_write_bytecode = True
    removed: list[str] = []
    for path in history_files(default_homes() if homes is None else homes):
        try:
            path.unlink()
            removed.append(str(path))
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not remove history file %s: %s", path, exc.strerror)
    return HardeningReport(resource.getrlimit(resource.RLIMIT_CORE), 0o077, tuple(removed))


def scrub_secret_env(env: MutableMapping[str, str] | None = None) -> list[str]:
    """Register every secret in ``env`` for redaction, then delete it; return the names."""
    target = os.environ if env is None else env
    removed = []
    for name in SECRET_ENV_NAMES:
        value = target.pop(name, None)
        if value is not None:
            register_secret(value)
            removed.append(name)
    return removed


def service_env(
    base: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
    allow: Iterable[str] = SERVICE_ENV_ALLOWLIST,
) -> dict[str, str]:
    """An allowlisted copy of ``base`` plus the service's own ``extra`` variables.

    No secret name passes from ``base``; token names never pass at all. (FileBrowser's own
    ``FB_PASSWORD`` in ``extra`` carries a bcrypt hash, not the user's password.)
    """
    env = {name: base[name] for name in allow if name in base and name not in SECRET_ENV_NAMES}
    env.update(extra or {})
    for name in TOKEN_ENV_NAMES:
        env.pop(name, None)
    return env


@dataclass(frozen=True)
class UserEntry:
    """The parts of a passwd entry Phoenix needs."""

    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class PrivilegeDecision:
    """Whether to drop root, to whom, and why (printed at start)."""

    action: Literal["drop", "stay"]
    reason: str
    user: UserEntry | None = None
    warnings: tuple[str, ...] = field(default=())


def lookup_user(name: str) -> UserEntry | None:
    """The passwd entry of ``name``, or ``None`` when there is no such user."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return UserEntry(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def decide_privileges(euid: int, wanted: str, entry: UserEntry | None) -> PrivilegeDecision:
    """Pure: root drops to ``wanted`` when it exists; anyone else stays as they are."""
    if euid != 0:
        return PrivilegeDecision("stay", f"running as uid {euid}, not root: nothing to drop")
    if entry is None:
        warning = (
            f"running as root and user {wanted!r} does not exist: services run as root. "
            f"The Phoenix image creates {wanted!r}; elsewhere create it or set security.user"
        )
        return PrivilegeDecision("stay", warning, None, (warning,))
    if entry.uid == 0:
        warning = f"security.user {wanted!r} is uid 0: services run as root"
        return PrivilegeDecision("stay", warning, entry, (warning,))
    return PrivilegeDecision("drop", f"dropping root to {wanted} (uid {entry.uid})", entry)


def chown_tree(root: Path, uid: int, gid: int) -> int:
    """Give ``root`` and everything under it (not following links) to ``uid:gid``; count changes."""
    changed = 0
    if not root.exists():
        return 0
    for top, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = os.path.join(top, name) if name != "." else top
            try:
                st = os.lstat(path)
                if (st.st_uid, st.st_gid) != (uid, gid):
                    os.lchown(path, uid, gid)
                    changed += 1
            except OSError as exc:
                log.warning("cannot chown %s: %s", path, exc.strerror)
    return changed


def drop_privileges(
    decision: PrivilegeDecision,
    own: Sequence[Path],
    env: MutableMapping[str, str] | None = None,
) -> None:
    """Prepare ownership of ``own`` for the user, then switch this process to it for good."""
    if decision.action != "drop" or decision.user is None:
        return
    user = decision.user
    for path in own:
        chown_tree(path, user.uid, user.gid)
    os.setgroups([])
    os.setgid(user.gid)
    os.setuid(user.uid)
    target = os.environ if env is None else env
    target.update({"HOME": user.home, "USER": user.name, "LOGNAME": user.name})

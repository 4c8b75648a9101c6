"""``config/versions.conf``: the pinned versions of everything Phoenix builds on.

Format: ``KEY=VALUE`` lines, ``#`` comments, blank lines. Validation is by key suffix:
``*_COMMIT`` is 40 hex, ``*_SHA256`` is 64 hex, nothing may float (``latest``, ``main``, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from provisioner.core.errors import ConfigError

REQUIRED_KEYS = (
    "COMFYUI_REPO",
    "COMFYUI_COMMIT",
    "COMFYUI_VERSION",
    "NGC_PYTORCH_TAG",
    "FILEBROWSER_VERSION",
    "FILEBROWSER_SHA256",
)
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*\Z")
_HEX40 = re.compile(r"^[0-9a-f]{40}\Z")
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_FLOATING = {"latest", "main", "master", "head", "stable", "nightly", "dev", "*"}


@dataclass(frozen=True)
class Versions:
    """Parsed versions.conf, in file order."""

    values: dict[str, str]
    path: str = "config/versions.conf"

    def __getitem__(self, key: str) -> str:
        return self.values[key]

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)

    @property
    def comfyui_repo(self) -> str:
        return self.values["COMFYUI_REPO"]

    @property
    def comfyui_commit(self) -> str:
        return self.values["COMFYUI_COMMIT"]


def parse_versions(text: str, path: str = "config/versions.conf") -> Versions:
    """Parse and validate versions.conf text; errors name ``path:line``."""
    values: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.split(" #", 1)[0].strip().strip('"').strip("'")
        if not sep or not _KEY.match(key):
            raise ConfigError(
                f"expected KEY=VALUE with an UPPER_CASE key, found {raw.strip()!r}", where=where
            )
        if key in values:
            raise ConfigError(f"{key} is set twice", where=where, hint="keep one line per key")
        _check_value(key, value, where)
        values[key] = value
    missing = [k for k in REQUIRED_KEYS if k not in values]
    if missing:
        raise ConfigError(f"missing required keys: {', '.join(missing)}", where=path)
    return Versions(values, path)


def _check_value(key: str, value: str, where: str) -> None:
    if not value:
        raise ConfigError(f"{key} is empty", where=where)
    if value.lower() in _FLOATING or value.lower().startswith("latest"):
        raise ConfigError(
            f"{key}={value} floats; pin an exact version",
            where=where,
            hint="use a release tag or a 40-hex commit",
        )
    if key.endswith("_COMMIT") and not _HEX40.match(value):
        raise ConfigError(f"{key} must be a 40-hex commit, found {value!r}", where=where)
    if key.endswith("_SHA256") and not _HEX64.match(value):
        raise ConfigError(f"{key} must be 64 lowercase hex, found {value!r}", where=where)


def load_versions(path: Path | None = None) -> Versions:
    """Read and validate versions.conf (the shipped one by default)."""
    from provisioner.core.fsio import read_text_file
    from provisioner.core.resources import versions_conf

    target = path or versions_conf()
    text = read_text_file(
        target,
        "versions file",
        ConfigError,
        "restore config/versions.conf (PHOENIX_HOME points Phoenix at its folder)",
    )
    return parse_versions(text, str(target))

"""Locate files shipped next to the package: manifests/, schemas/, config/.

In a source checkout (and the image, which installs Phoenix from /opt/phoenix in editable mode)
they sit beside ``provisioner/``; a wheel install puts them under ``<prefix>/share/phoenix``.
``PHOENIX_HOME`` overrides both.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def home() -> Path:
    """The directory that holds ``manifests/``, ``schemas/`` and ``config/``."""
    override = os.environ.get("PHOENIX_HOME")
    if override:
        if not (Path(override) / "manifests").is_dir():
            from provisioner.core.errors import ConfigError

            raise ConfigError(
                f"{override!r} has no manifests/ folder",
                where="env:PHOENIX_HOME",
                hint="point it at the folder that holds manifests/, schemas/ and config/, "
                "or unset it",
            )
        return Path(override)
    beside = Path(__file__).resolve().parents[2]  # provisioner/core/resources.py -> checkout
    if (beside / "manifests").is_dir():
        return beside
    installed = Path(sys.prefix) / "share" / "phoenix"
    return installed if installed.is_dir() else beside


def manifests_dir() -> Path:
    return home() / "manifests"


def schemas_dir() -> Path:
    return home() / "schemas"


def versions_conf() -> Path:
    return home() / "config" / "versions.conf"

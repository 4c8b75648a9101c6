"""Locate files shipped next to the package: manifests/, schemas/, config/.

In a source checkout (and the image, which installs Phoenix from /opt/phoenix in editable mode)
they sit beside ``provisioner/``. ``PHOENIX_HOME`` overrides for unusual installs.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The directory that holds ``manifests/``, ``schemas/`` and ``config/``."""
    override = os.environ.get("PHOENIX_HOME")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent


def manifests_dir() -> Path:
    return home() / "manifests"


def schemas_dir() -> Path:
    return home() / "schemas"


def versions_conf() -> Path:
    return home() / "config" / "versions.conf"

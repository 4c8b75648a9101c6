"""Build tiny, real wheels (METADATA, WHEEL, RECORD in a zip) for a local wheel folder.

pip and uv install them like any other wheel; each carries one module so an import proves it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(folder: Path, name: str, version: str, requires: Sequence[str] = ()) -> Path:
    """Write ``<name>-<version>-py3-none-any.whl`` into ``folder`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = _normalise(name)
    target = folder / f"{dist}-{version}-py3-none-any.whl"
    if target.exists():
        return target
    info = f"{dist}-{version}.dist-info"
    files: dict[str, bytes] = {
        f"{dist}/__init__.py": f"__version__ = {version!r}\n".encode(),
        f"{info}/METADATA": (
            "Metadata-Version: 2.1\n"
            f"Name: {name}\n"
            f"Version: {version}\n" + "".join(f"Requires-Dist: {req}\n" for req in requires)
        ).encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: phoenix-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = [_record_line(path, data) for path, data in files.items()]
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    tmp.replace(target)
    return target


def local_only_env(folder: Path) -> dict[str, str]:
    """Installer variables that make ``folder`` the only source of packages, for pip and uv.

    uv has no ``UV_NO_INDEX`` variable (``uv pip install --help`` lists none), so an unknown
    package would still be fetched from PyPI: its default index becomes an empty local one.
    """
    empty = folder.parent / f"{folder.name}-empty-index"
    empty.mkdir(exist_ok=True)
    return {
        "UV_DEFAULT_INDEX": empty.as_uri(),
        "UV_FIND_LINKS": str(folder),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(folder),
    }

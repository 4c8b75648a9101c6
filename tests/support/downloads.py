"""Download test payloads: deterministic bytes, their SHA256, and what a staging folder holds."""

from __future__ import annotations

import hashlib
from pathlib import Path


def blob(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 64
        counter += 1
    return bytes(out[:size])


def sha(data: bytes) -> str:
    """The SHA256 of ``data`` in lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def leftovers(staging: Path) -> list[str]:
    """The names left in ``staging``, sorted."""
    return sorted(p.name for p in staging.iterdir())

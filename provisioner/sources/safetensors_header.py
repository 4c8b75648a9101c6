"""Read only the JSON header of a ``.safetensors`` file: 8 bytes of length, then the header.

A safetensors file starts with a little-endian u64 ``N`` followed by ``N`` bytes of JSON mapping
tensor names to dtype/shape/offsets (plus an optional ``__metadata__`` object). Reading it costs
one small read, however large the file, and is enough to tell what kind of model it holds.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

#: Real headers are at most a few MB (tens of thousands of tensors); anything larger is not one.
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class SafetensorsHeader:
    """Tensor names and the free-form ``__metadata__`` strings of one file."""

    keys: tuple[str, ...]
    metadata: dict[str, str] = field(default_factory=dict)


def read_header(path: Path) -> SafetensorsHeader | None:
    """The header of ``path``, or ``None`` when the file is not a readable safetensors file."""
    try:
        with path.open("rb") as fh:
            prefix = fh.read(8)
            if len(prefix) != 8:
                return None
            (length,) = struct.unpack("<Q", prefix)
            if length < 2 or length > MAX_HEADER_BYTES:
                return None
            raw = fh.read(length)
    except OSError:
        return None
    if len(raw) != length:  # truncated: a partial file or not safetensors at all
        return None
    return parse_header(raw)


def parse_header(raw: bytes) -> SafetensorsHeader | None:
    """Parse header bytes (without the length prefix); ``None`` if they are not a header."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    meta_raw = data.pop("__metadata__", None)
    metadata = (
        {str(k): str(v) for k, v in meta_raw.items()} if isinstance(meta_raw, dict) else {}
    )
    return SafetensorsHeader(tuple(sorted(str(k) for k in data)), metadata)


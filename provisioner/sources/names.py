"""Names that come from the network (API file names, Content-Disposition) made safe.

A name is reduced to one plain path component, so joining it to a target folder can never
escape that folder, overwrite a hidden file, or produce a name Windows-mounted volumes refuse.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

_MAX_NAME_BYTES = 255
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CLOCK$"]
    + [f"COM{i}" for i in range(10)]
    + [f"LPT{i}" for i in range(10)]
)
_UNSAFE_CHARS = re.compile(r'[<>:"|?*]')


def safe_filename(name: str) -> str:
    """Reduce ``name`` to a safe single file name, or raise ``ValueError`` if nothing is left.

    Directories are stripped (``/`` and ``\\``), NUL, control and bidi-format characters removed,
    leading dots and surrounding spaces dropped, ``<>:"|?*`` replaced by ``_``, Windows reserved
    device names prefixed with ``_``, and the result cut to 255 UTF-8 bytes keeping the extension.
    """
    text = unicodedata.normalize("NFC", name)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in {"Cc", "Cf", "Cs"})
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = _UNSAFE_CHARS.sub("_", text)
    text = text.strip().lstrip(".").strip().rstrip(". ")
    if not text:
        raise ValueError(f"file name {name!r} has no usable characters")
    stem = text.split(".", 1)[0]
    if stem.upper() in _RESERVED:
        text = f"_{text}"
    return _truncate(text)


def _truncate(text: str) -> str:
    if len(text.encode("utf-8")) <= _MAX_NAME_BYTES:
        return text
    stem, dot, ext = text.rpartition(".")
    if not dot or len(ext.encode("utf-8")) > 32:
        stem, ext = text, ""
    suffix = f".{ext}" if ext else ""
    budget = _MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    cut = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return cut + suffix


def confined_path(folder: Path, name: str) -> Path:
    """``folder / safe_filename(name)``, checked to resolve inside ``folder``."""
    target = folder / safe_filename(name)
    base = folder.resolve()
    if target.resolve().parent != base:
        raise ValueError(f"file name {name!r} would leave {folder}")
    return target


def filename_from_content_disposition(header: str | None) -> str | None:
    """The file name a ``Content-Disposition`` header suggests, made safe; None when absent.

    ``filename*=UTF-8''...`` (RFC 6266/5987) wins over ``filename=``.
    """
    if not header:
        return None
    from urllib.parse import unquote

    star = re.search(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", header, re.IGNORECASE)
    if star:
        charset = star.group(1) or "utf-8"
        try:
            raw = unquote(star.group(2).strip(), encoding=charset, errors="strict")
        except (LookupError, UnicodeDecodeError):
            raw = ""
        if raw:
            try:
                return safe_filename(raw)
            except ValueError:
                return None
    plain = re.search(r'filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]+))', header, re.IGNORECASE)
    if not plain:
        return None
    raw = plain.group(1) if plain.group(1) is not None else plain.group(2).strip()
    raw = re.sub(r"\\(.)", r"\1", raw)
    try:
        return safe_filename(raw)
    except ValueError:
        return None

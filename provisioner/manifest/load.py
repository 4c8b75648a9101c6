"""Read a manifest file with ruamel.yaml, keeping the line:col of every key and item.

Everything that can go wrong with the file itself (missing, a directory, too big, not UTF-8,
empty, YAML syntax, duplicate keys, alias bombs) becomes a :class:`ManifestError` with a location.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.errors import ManifestError

MAX_MANIFEST_BYTES = 1024 * 1024
MAX_NODES = 100_000

KeyPath = Sequence["str | int"]


Position = tuple[int, int]


@dataclass(frozen=True)
class ManifestDoc:
    """A parsed manifest: plain data plus the 1-based positions of every key and value.

    ``positions`` maps a key path (tuple of keys and indices) to ``(key_pos, value_pos)``;
    for list items both are the item's position.
    """

    path: str
    data: dict[str, Any]
    positions: dict[tuple[str | int, ...], tuple[Position, Position]]

    def position(self, keypath: KeyPath, at_value: bool = False) -> Position:
        """(line, col) of the deepest node of ``keypath`` that exists in the file.

        With ``at_value`` a scalar value's own position is given instead of its key's.
        """
        path = tuple(keypath)
        while path and path not in self.positions:
            path = path[:-1]
        if not path:
            return (1, 1)
        key_pos, value_pos = self.positions[path]
        exact = len(path) == len(tuple(keypath))
        return value_pos if at_value and exact else key_pos

    def where(self, keypath: KeyPath, at_value: bool = False) -> str:
        """``path:line:col`` for ``keypath``."""
        line, col = self.position(keypath, at_value)
        return f"{self.path}:{line}:{col}"


def format_keypath(keypath: KeyPath) -> str:
    """``models[2].type`` style key path ("(top level)" for the root)."""
    out = ""
    for key in keypath:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "(top level)"


def load_manifest_file(path: str) -> ManifestDoc:
    """Read and parse ``path``; every failure is a located :class:`ManifestError`."""
    raw = _read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ManifestError(
            f"file is not UTF-8 text (byte 0x{raw[exc.start]:02x})",
            where=f"{path}:{line}:{col}",
            hint="save the manifest as UTF-8",
        ) from None
    node, data = _parse_yaml(text, path)
    if node is None or data is None:
        raise ManifestError(
            "manifest is empty",
            where=f"{path}:1:1",
            hint="start with 'version: 1' (see examples/flux-dev.yaml)",
        )
    if not isinstance(data, dict):
        raise ManifestError(
            f"expected a mapping of sections (version, models, ...), found {_kind(data)}",
            where=f"{path}:1:1",
            hint="a manifest starts with 'version: 1' at the left margin",
        )
    positions: dict[tuple[str | int, ...], tuple[Position, Position]] = {}
    _index(node, (), positions, path, [0])
    return ManifestDoc(path, _plain(data), positions)


def _read_bytes(path: str) -> bytes:
    p = Path(path)
    hint = "check --manifest / PHOENIX_MANIFEST and that the file is mounted into the container"
    if p.is_dir():
        raise ManifestError("is a directory, expected a YAML file", where=path, hint=hint)
    try:
        size = p.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(
                f"file is {size} bytes; a manifest is at most {MAX_MANIFEST_BYTES} bytes",
                where=path,
                hint="did you point at a model or log file instead of manifest.yaml?",
            )
        with p.open("rb") as fh:
            return fh.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError("manifest file not found", where=path, hint=hint) from None
    except PermissionError:
        raise ManifestError(
            "permission denied reading the manifest", where=path, hint="make it readable"
        ) from None
    except OSError as exc:
        raise ManifestError(f"cannot read manifest: {exc.strerror}", where=path) from None


def _parse_yaml(text: str, path: str) -> tuple[Any, Any]:
    """Compose the node tree (C parser when ruamel.yaml.clib is present) and construct data."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="safe", pure=False)
    try:
        node = yaml.compose(text)
        if node is None:
            return None, None
        return node, yaml.constructor.construct_document(node)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        problem = problem.replace("\n", " ").strip() or "invalid YAML"
        hint = "check indentation and quoting near this position"
        if "duplicate key" in problem:
            hint = "each key may appear once per mapping; remove or merge the duplicate"
        raise ManifestError(f"YAML syntax error: {problem}", where=where, hint=hint) from None
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise ManifestError(f"YAML error: {exc}", where=path) from None


def _pos(node: Any) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _index(
    node: Any,
    keypath: tuple[str | int, ...],
    out: dict[tuple[str | int, ...], tuple[Position, Position]],
    path: str,
    count: list[int],
) -> None:
    """Record positions of every key and item; bounded so alias expansion cannot run away."""
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    count[0] += 1
    if count[0] > MAX_NODES:
        line, col = _pos(node)
        raise ManifestError(
            f"manifest expands to more than {MAX_NODES} values (YAML aliases?)",
            where=f"{path}:{line}:{col}",
            hint="write the manifest without anchors/aliases",
        )
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if not key_node.tag.endswith(":str"):
                line, col = _pos(key_node)
                raise ManifestError(
                    f"keys must be text, found {key_node.value!r}",
                    where=f"{path}:{line}:{col}",
                    hint="quote the key",
                )
            child = (*keypath, key_node.value)
            scalar = not isinstance(value_node, MappingNode | SequenceNode)
            out[child] = (_pos(key_node), _pos(value_node) if scalar else _pos(key_node))
            _index(value_node, child, out, path, count)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            child = (*keypath, i)
            out[child] = (_pos(item), _pos(item))
            _index(item, child, out, path, count)


def _kind(value: Any) -> str:
    from provisioner.manifest.validate import json_kind

    kind = json_kind(value)
    return kind if kind == "null" else f"a {kind}"


def _plain(value: Any) -> Any:
    """JSON-like data: dates become ISO text (aliases were bounded by :func:`_index`)."""
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, _dt.date | _dt.datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)

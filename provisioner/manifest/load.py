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


@dataclass(frozen=True)
class ManifestDoc:
    """A parsed manifest: plain data plus the ruamel tree that knows positions."""

    path: str
    data: dict[str, Any]
    tree: Any

    def position(self, keypath: KeyPath, at_value: bool = False) -> tuple[int, int]:
        """1-based (line, col) of the deepest node of ``keypath`` that exists in the file.

        With ``at_value`` a scalar value's own position is given instead of its key's.
        """
        node: Any = self.tree
        line, col = 1, 1
        last = len(keypath) - 1
        for depth, key in enumerate(keypath):
            lc = getattr(node, "lc", None)
            try:
                if isinstance(key, int) and isinstance(node, list):
                    if lc is not None:
                        line, col = (v + 1 for v in lc.item(key))
                    node = node[key]
                elif isinstance(node, dict) and key in node:
                    scalar = not isinstance(node[key], dict | list)
                    use_value = at_value and depth == last and scalar
                    if lc is not None:
                        pos = lc.value(key) if use_value else lc.key(key)
                        line, col = (v + 1 for v in pos)
                    node = node[key]
                else:
                    break
            except (KeyError, IndexError, TypeError):
                break
        return line, col

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
    tree = _parse_yaml(text, path)
    if tree is None:
        raise ManifestError(
            "manifest is empty",
            where=f"{path}:1:1",
            hint="start with 'version: 1' (see examples/flux-dev.yaml)",
        )
    if not isinstance(tree, dict):
        raise ManifestError(
            f"expected a mapping of sections (version, models, ...), found {_kind(tree)}",
            where=f"{path}:1:1",
            hint="a manifest starts with 'version: 1' at the left margin",
        )
    doc = ManifestDoc(path, {}, tree)
    data = _plain(tree, doc, [], [0])
    return ManifestDoc(path, data, tree)


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


def _parse_yaml(text: str, path: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        problem = problem.replace("\n", " ").strip() or "invalid YAML"
        hint = "check indentation and quoting near this position"
        if "duplicate key" in problem:
            hint = "each key may appear once per mapping; remove or merge the duplicate"
        raise ManifestError(f"YAML syntax error: {problem}", where=where, hint=hint) from None
    except (YAMLError, ValueError, RecursionError) as exc:
        raise ManifestError(f"YAML error: {exc}", where=path) from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _plain(node: Any, doc: ManifestDoc, keypath: list[str | int], count: list[int]) -> Any:
    """Convert the ruamel tree to plain JSON-like data, bounded against alias expansion."""
    count[0] += 1
    if count[0] > MAX_NODES:
        raise ManifestError(
            f"manifest expands to more than {MAX_NODES} values (YAML aliases?)",
            where=doc.where(keypath),
            hint="write the manifest without anchors/aliases",
        )
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if not isinstance(key, str):
                raise ManifestError(
                    f"keys must be text, found {_kind(key)} {key!r}",
                    where=doc.where([*keypath]),
                    hint="quote the key",
                )
            out[key] = _plain(value, doc, [*keypath, key], count)
        return out
    if isinstance(node, list):
        return [_plain(v, doc, [*keypath, i], count) for i, v in enumerate(node)]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, _dt.date | _dt.datetime):
        return node.isoformat()
    return str(node)

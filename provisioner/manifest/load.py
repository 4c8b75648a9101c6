"""Read a manifest file with ruamel.yaml, keeping the line:col of every key and item.

Everything that can go wrong with the file itself (missing, a directory, too big, not UTF-8,
empty, YAML syntax, duplicate keys, alias bombs) becomes a :class:`ManifestError` with a location.
"""

from __future__ import annotations

import datetime as _dt
import functools
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.core.errors import ManifestError

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
    return load_manifest_text(text, path)


def load_manifest_text(text: str, path: str) -> ManifestDoc:
    """Parse manifest ``text``; errors are located at ``path`` (a file name or a label)."""
    positions: dict[tuple[str | int, ...], tuple[Position, Position]] = {}
    data = _parse_yaml(text, path, positions)
    if data is None:
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
    return ManifestDoc(path, data, positions)


def _read_bytes(path: str) -> bytes:
    p = Path(path)
    hint = "check --manifest / PHOENIX_MANIFEST and that the file is mounted into the container"
    if p.is_dir():
        raise ManifestError("is a directory, expected a YAML file", where=path, hint=hint)
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):  # a pipe or device would block or never end
            raise ManifestError(
                "is not a regular file (a pipe or device), expected a YAML file",
                where=path,
                hint=hint,
            )
        size = st.st_size
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
        raise ManifestError(
            f"cannot read manifest: {exc.strerror}", where=path, hint=hint
        ) from None


def _parse_yaml(
    text: str, path: str, positions: dict[tuple[str | int, ...], tuple[Position, Position]]
) -> Any:
    """Plain data of the document (None when empty), filling ``positions`` on the way.

    ruamel composes the node tree (its C parser when ruamel.yaml.clib is present); one walk
    over it then builds the data and records where every key and item is (:class:`_Builder`).
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="safe", pure=False)
    if _c_parser_available():
        yaml.Resolver = _resolver_class()
    try:
        node = yaml.compose(text)
        if node is None:
            return None
        return _Builder(yaml.constructor, path, positions).build(node, ())
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        problem = problem.replace("\n", " ").strip() or "invalid YAML"
        raise ManifestError(
            f"YAML syntax error: {problem}",
            where=where,
            hint="check indentation and quoting near this position",
        ) from None
    except RecursionError:
        raise ManifestError(
            "nested too deeply",
            where=path,
            hint="a manifest nests a few levels; look for unbalanced [ or {",
        ) from None
    except (YAMLError, ValueError, TypeError) as exc:
        position = getattr(exc, "position", None)  # a reader error: an offset into the text
        if isinstance(position, int):
            line = text.count("\n", 0, position) + 1
            col = position - (text.rfind("\n", 0, position) + 1) + 1
            problem = str(getattr(exc, "reason", None) or "unacceptable character")
            raise ManifestError(
                f"YAML error: {problem} (#x{ord(text[position]):04x})",
                where=f"{path}:{line}:{col}",
                hint="remove the control character (save the file as plain UTF-8 text)",
            ) from None
        raise ManifestError(f"YAML error: {exc}", where=path) from None


def _c_parser_available() -> bool:
    from ruamel.yaml import main

    return getattr(main, "CParser", None) is not None


@functools.cache
def _resolver_class() -> type:
    """ruamel's resolver, picking its tag rules once per document instead of once per scalar,
    and resolving each distinct plain scalar once (keys such as ``hf`` or ``type`` repeat on
    every item).

    Under the C parser the YAML version is always the default (a ``%YAML`` directive does not
    reach the resolver) and Phoenix adds no path resolvers, so a plain scalar's tag depends on
    its text alone; finding the rules anew for every scalar costs two failed attribute
    look-ups each (~15 ms on a 500-item manifest).
    """
    from ruamel.yaml.nodes import ScalarNode
    from ruamel.yaml.resolver import VersionedResolver

    find_rules = VersionedResolver.__dict__["versioned_resolver"].fget

    class OnceResolver(VersionedResolver):
        _rules: Any = None
        _plain_tags: dict[str, Any] | None = None

        @property
        def versioned_resolver(self) -> Any:
            if self._rules is None:
                self._rules = find_rules(self)
            return self._rules

        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if kind is not ScalarNode or not implicit[0] or self.yaml_path_resolvers:
                return super().resolve(kind, value, implicit)
            if self._plain_tags is None:
                self._plain_tags = {}
            tag = self._plain_tags.get(value)
            if tag is None:
                tag = self._plain_tags[value] = super().resolve(kind, value, implicit)
            return tag

    return OnceResolver


_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class _Builder:
    """One walk over ruamel's node tree: JSON-like data plus the position of every key and item.

    Mappings, sequences and text are built here; every other scalar (numbers, booleans, null,
    dates) and any explicitly tagged node goes through ruamel's own safe constructor, so values
    are exactly ruamel's. Dates become ISO text. Keys must be text and unique. Aliases expand
    (an alias is a copy), bounded by ``MAX_NODES`` so an alias bomb stops early.
    """

    def __init__(self, constructor: Any, path: str, out: dict[Any, tuple[Position, Position]]):
        from ruamel.yaml.nodes import MappingNode, SequenceNode

        self.constructor = constructor
        self.path = path
        self.out = out
        self.count = 0
        self.mapping_node, self.sequence_node = MappingNode, SequenceNode

    def build(self, node: Any, keypath: tuple[str | int, ...]) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise ManifestError(
                f"manifest expands to more than {MAX_NODES} values (YAML aliases?)",
                where=self._where(node),
                hint="write the manifest without anchors/aliases",
            )
        tag = str(node.tag)
        if isinstance(node, self.mapping_node) and tag == _MAP_TAG:
            return self._mapping(node, keypath)
        if isinstance(node, self.sequence_node) and tag == _SEQ_TAG:
            items = []
            for i, item in enumerate(node.value):
                pos = _pos(item)
                self.out[(*keypath, i)] = (pos, pos)
                items.append(self.build(item, (*keypath, i)))
            return items
        if tag == _STR_TAG and not isinstance(node, self.mapping_node | self.sequence_node):
            return node.value
        return _plain(self.constructor.construct_object(node, deep=True))

    def _mapping(self, node: Any, keypath: tuple[str | int, ...]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if str(key_node.tag) != _STR_TAG or isinstance(
                key_node, self.mapping_node | self.sequence_node
            ):
                found = (
                    "a list" if isinstance(key_node, self.sequence_node)
                    else "a mapping" if isinstance(key_node, self.mapping_node)
                    else repr(key_node.value)
                )  # fmt: skip
                raise ManifestError(
                    f"keys must be text, found {found}",
                    where=self._where(key_node),
                    hint="quote the key",
                )
            key = key_node.value
            child = (*keypath, key)
            if key in data:
                line, col = self.out[child][0]
                raise ManifestError(
                    f"YAML syntax error: duplicate key {key!r} (first at line {line}, "
                    f"column {col})",
                    where=self._where(key_node),
                    hint="each key may appear once per mapping; remove or merge the duplicate",
                )
            key_pos = _pos(key_node)
            nested = isinstance(value_node, self.mapping_node | self.sequence_node)
            self.out[child] = (key_pos, key_pos if nested else _pos(value_node))
            data[key] = self.build(value_node, child)
        return data

    def _where(self, node: Any) -> str:
        line, col = _pos(node)
        return f"{self.path}:{line}:{col}"


def _pos(node: Any) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _kind(value: Any) -> str:
    kind = json_kind(value)
    return kind if kind == "null" else f"a {kind}"


def json_kind(value: Any) -> str:
    """JSON's name for the kind of ``value`` (``mapping`` for objects, ``list`` for arrays)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "mapping"


def _plain(value: Any) -> Any:
    """JSON-like data from a value ruamel constructed: dates become ISO text."""
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, _dt.date | _dt.datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)

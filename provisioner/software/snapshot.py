"""ComfyUI-Manager snapshots: read and write the format, turn one into manifest entries.

A snapshot (``save-snapshot`` JSON, or YAML with everything under ``custom_nodes:``) holds
``comfyui`` (commit), ``git_custom_nodes`` (``{url: {hash, disabled}}``), ``cnr_custom_nodes``
(``{registry id: version}``), ``file_custom_nodes`` (``[{filename, disabled}]``) and ``pips``
(``pip freeze`` as ``{"name==ver": ""}`` or ``{"name": "url"}``). Importing keeps every item it
can express as a manifest entry and reports each one it cannot; nothing is dropped silently.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from provisioner.core.errors import GitError, ManifestError
from provisioner.core.layout import Layout
from provisioner.core.requirements import parse_requirement
from provisioner.manifest.items import credential_in_url, parse_node_item, without_credentials
from provisioner.manifest.load import format_keypath
from provisioner.software import gitops, pyenv
from provisioner.software.guard import is_guarded
from provisioner.state.store import State

#: ``pip freeze`` leaves these out; so does an export, and an import skips them
TOOLING = frozenset({"pip", "setuptools", "wheel", "distribute", "uv"})
PIP_MODES = ("none", "pinned", "all")


@dataclass(frozen=True)
class GitNode:
    """One git custom node in a snapshot."""

    hash: str
    disabled: bool = False


@dataclass(frozen=True)
class Snapshot:
    """A ComfyUI-Manager snapshot."""

    comfyui: str | None = None
    git_custom_nodes: dict[str, GitNode] = field(default_factory=dict)
    cnr_custom_nodes: dict[str, str] = field(default_factory=dict)
    file_custom_nodes: tuple[dict[str, Any], ...] = ()
    pips: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The Manager's JSON shape."""
        return {
            "comfyui": self.comfyui,
            "git_custom_nodes": {
                url: {"hash": n.hash, "disabled": n.disabled}
                for url, n in self.git_custom_nodes.items()
            },
            "cnr_custom_nodes": dict(self.cnr_custom_nodes),
            "file_custom_nodes": [dict(f) for f in self.file_custom_nodes],
            "pips": dict(self.pips),
        }


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.default_flow_style = False
    y.width = 4096
    return y


def parse_snapshot(text: str, name: str) -> Snapshot:
    """Parse snapshot text (JSON, or YAML by extension/content); errors name the file and key."""
    data: Any
    try:
        # YAML is a superset of JSON: anything not named .json is read as YAML
        data = json.loads(text) if name.endswith(".json") else _yaml().load(text)
    except (json.JSONDecodeError, YAMLError, RecursionError) as exc:
        what = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ManifestError(f"not a ComfyUI-Manager snapshot: {what}", where=name) from exc
    _check_unicode(data, name)
    if isinstance(data, dict) and set(data) == {"custom_nodes"}:
        data = data["custom_nodes"]  # the Manager's YAML form
    if not isinstance(data, dict) or not ({"comfyui", "git_custom_nodes"} & set(data)):
        raise ManifestError(
            "not a ComfyUI-Manager snapshot: expected keys comfyui, git_custom_nodes, "
            "cnr_custom_nodes, pips",
            where=name,
        )

    def table(key: str) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ManifestError(
                f"{key}: expected a mapping, found {type(value).__name__}", where=name
            )
        return dict(value)

    nodes: dict[str, GitNode] = {}
    for url, entry in table("git_custom_nodes").items():
        if not isinstance(entry, dict) or not isinstance(entry.get("hash"), str):
            raise ManifestError(f"git_custom_nodes.{url}: expected {{hash, disabled}}", where=name)
        nodes[str(url)] = GitNode(entry["hash"], bool(entry.get("disabled", False)))
    files = data.get("file_custom_nodes") or []
    if not isinstance(files, list):
        raise ManifestError("file_custom_nodes: expected a list", where=name)
    comfy = data.get("comfyui")
    return Snapshot(
        comfyui=str(comfy) if comfy else None,
        git_custom_nodes=nodes,
        cnr_custom_nodes={str(k): str(v) for k, v in table("cnr_custom_nodes").items()},
        file_custom_nodes=tuple(dict(f) for f in files if isinstance(f, dict)),
        pips={str(k): str(v or "") for k, v in table("pips").items()},
    )


def _check_unicode(data: Any, name: str) -> None:
    """Every key and string can be written as UTF-8: JSON's ``"\\ud800"`` (a lone surrogate)
    parses to a string that no manifest, log or terminal can hold."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    while stack:  # a loop, not recursion: the parser allowed nesting deeper than a stack frame
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(path, "key", key, name)
                stack.append(((*path, str(key)), item))
        elif isinstance(value, list):
            stack.extend(((*path, i), item) for i, item in enumerate(value))
        else:
            _check_text(path, "value", value, name)


def _check_text(path: tuple[str | int, ...], what: str, value: Any, name: str) -> None:
    if not isinstance(value, str):
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        shown = ascii(value if len(value) <= 60 else value[:57] + "...")
        raise ManifestError(
            f"at {format_keypath(path)}: {what} {shown} is not valid Unicode "
            f"({value[exc.start]!a} cannot be written as UTF-8)",
            where=name,
            hint="remove the \\uXXXX escape of a lone surrogate, or save the snapshot again "
            "with ComfyUI-Manager",
        ) from None


def dump_snapshot(snap: Snapshot, fmt: str) -> str:
    """Write ``snap`` as the Manager does: indented JSON, or YAML under ``custom_nodes:``."""
    if fmt == "json":
        return json.dumps(snap.to_json(), indent=4) + "\n"
    buf = io.StringIO()
    _yaml().dump({"custom_nodes": snap.to_json()}, buf)
    return buf.getvalue()


@dataclass(frozen=True)
class Imported:
    """Manifest entries from a snapshot, and what could not become one (with why)."""

    comfyui_ref: str | None
    nodes: tuple[dict[str, str], ...]
    packages: tuple[str, ...]
    reports: tuple[str, ...]

    def manifest(self) -> dict[str, Any]:
        """A manifest v1 fragment (validated by the caller's loader like any manifest)."""
        out: dict[str, Any] = {"version": 1}
        if self.comfyui_ref:
            out["comfyui"] = {"ref": self.comfyui_ref}
        if self.nodes:
            out["nodes"] = [dict(n) for n in self.nodes]
        if self.packages:
            out["packages"] = list(self.packages)
        return out


def _shown(url: str) -> str:
    """``url`` as a report may print it: without credentials, quoted if it holds a newline or
    another unprintable character (a report line stays one line)."""
    clean = without_credentials(url)[0]
    return clean if clean.isprintable() else ascii(clean)


def _node_entry(
    url: str, entry: GitNode, taken: dict[str, str]
) -> tuple[dict[str, str] | None, str | None]:
    """``(node entry, report)`` for one git node, checked as the manifest loader will check it.

    ``taken`` maps each folder name already imported to its URL (two URLs ending in the same
    repository name would claim one folder under ``custom_nodes/``).
    """
    where = f"node {_shown(url)}"
    if entry.disabled:
        return None, f"{where}: disabled in the snapshot"
    try:
        item = parse_node_item(url)  # first: it refuses credentials without quoting them
        gitops.check_url(url)
    except GitError as exc:
        return None, f"{where}: {exc.message}"
    except ValueError as exc:
        return None, f"{where}: {exc}"
    if item.url != url or item.ref is not None:
        return None, (
            f"{where}: not a plain repository URL (space around it, or an '@ref' suffix); "
            "add it under nodes: by hand"
        )
    if not gitops.HEX40.match(entry.hash):
        return None, f"{where}: hash {entry.hash!r} is not a commit"
    if item.name in taken:
        return None, (
            f"{where}: folder custom_nodes/{item.name} is already taken by "
            f"{_shown(taken[item.name])} (add it under nodes: with a distinct name:)"
        )
    taken[item.name] = url
    return {"url": url, "ref": entry.hash}, None


def _pip_entry(key: str, value: str, mode: str) -> tuple[str | None, str | None]:
    """``(requirement, report)`` for one ``pips`` entry."""
    if key.startswith("-e") or key.startswith("--"):
        return None, f"pip {key!r}: editable/option entries are not portable"
    requirement = f"{key} @ {value}" if value else key
    try:
        req = parse_requirement(requirement)
    except ValueError as exc:
        return None, f"pip {key!r}: {exc}"
    if req.url and credential_in_url(req.url):
        return None, (
            f"pip {req.name} @ {_shown(req.url)}: the URL carries a credential "
            f"({credential_in_url(req.url)}); not written to a manifest"
        )
    if req.url and req.url.startswith("file:"):
        return None, f"pip {requirement}: a local file on the old machine"
    if req.url and mode != "all":
        return None, f"pip {requirement}: URL requirement skipped (use --pips all)"
    name = canonicalize_name(req.name)
    if name in TOOLING:
        return None, None
    if is_guarded(name):
        return None, f"pip {requirement}: the image's {name} is kept (torch guard)"
    return requirement, None


def import_snapshot(snap: Snapshot, pips: str = "pinned") -> Imported:
    """Turn a snapshot into manifest entries; every item left out gets a report line."""
    reports: list[str] = []
    nodes: list[dict[str, str]] = []
    taken: dict[str, str] = {}
    for url, entry in snap.git_custom_nodes.items():
        node, report = _node_entry(url, entry, taken)
        if node is not None:
            nodes.append(node)
        if report is not None:
            reports.append(report)
    for name, version in snap.cnr_custom_nodes.items():
        reports.append(
            f"registry node {name}@{version}: Comfy registry nodes cannot be resolved offline "
            f"(add its git URL under nodes:, see https://registry.comfy.org/nodes/{name})"
        )
    for item in snap.file_custom_nodes:
        reports.append(
            f"single-file node {item.get('filename')}: not a git repository "
            "(copy it into custom_nodes/ yourself)"
        )
    packages = _packages(snap.pips, pips, reports)
    comfy = snap.comfyui
    if comfy is not None and not gitops.HEX40.match(comfy):
        reports.append(f"comfyui {comfy!r} is not a commit")
        comfy = None
    return Imported(comfy, tuple(nodes), tuple(packages), tuple(reports))


def _packages(pips: dict[str, str], mode: str, reports: list[str]) -> list[str]:
    """The ``pips`` as requirements, one per distribution (a manifest names each package once);
    every entry left out is added to ``reports``."""
    if mode == "none":
        if pips:
            reports.append(f"{len(pips)} pip entries skipped (--pips none)")
        return []
    packages: dict[str, str] = {}
    for key, value in pips.items():
        requirement, report = _pip_entry(key, value, mode)
        if report:
            reports.append(report)
        if not requirement:
            continue
        name = canonicalize_name(parse_requirement(requirement).name)
        if name in packages:
            reports.append(f"pip {requirement}: {name} is already imported as {packages[name]!r}")
            continue
        packages[name] = requirement
    return list(packages.values())


def render_manifest(imported: Imported, source: str) -> str:
    """The manifest fragment as YAML, with the reports as comments on top."""
    head = [f"imported from ComfyUI-Manager snapshot {source} by phoenix import-snapshot"]
    head += [f"not imported: {line}" for line in imported.reports]
    # a report may quote the snapshot's text: every line of it stays a comment
    head = [f"# {part}" for line in head for part in (line.splitlines() or [""])]
    buf = io.StringIO()
    _yaml().dump(imported.manifest(), buf)
    return "\n".join(head) + "\n" + buf.getvalue()


def export_snapshot(
    layout: Layout, comfyui_path: Path, state: State, python: Path
) -> tuple[Snapshot, list[str]]:
    """The current state in the Manager's format, plus notes on what it could not express.

    Reads files only, plus one child that lists installed distributions (``pips``).
    """
    notes: list[str] = []
    comfy = gitops.read_head(comfyui_path) or state.comfyui_commit
    if comfy is None:
        notes.append(
            f"{comfyui_path}: no ComfyUI checkout (or its HEAD is unreadable); comfyui left empty"
        )
    nodes: dict[str, GitNode] = {}
    files: list[dict[str, Any]] = []
    root = layout.custom_nodes
    entries = sorted(root.iterdir()) if root.is_dir() else []
    for path in entries:
        name = path.name
        if name in {"__pycache__", ".disabled"} or name.startswith("."):
            continue
        if not _is_text(name):
            notes.append(f"custom_nodes/{ascii(name)[1:-1]}: name is not UTF-8; not exported")
            continue
        if path.is_file() and name.endswith((".py", ".py.disabled")):
            files.append({"filename": name, "disabled": name.endswith(".disabled")})
            continue
        if not path.is_dir():
            continue
        node, note = _exported_node(path, state)
        if note is not None:
            notes.append(note)
        if node is not None and node[0] in nodes:
            notes.append(f"custom_nodes/{name}: same origin as another folder; exported once")
        elif node is not None:
            nodes[node[0]] = node[1]
    pips: dict[str, str] = {}
    for key, dist in sorted(pyenv.installed_distributions(python).dists.items()):
        if key not in TOOLING:
            pips[f"{dist.name}=={dist.version}"] = ""
    return Snapshot(comfy, nodes, {}, tuple(files), pips), notes


def _is_text(name: str) -> bool:
    """A file name that a snapshot (UTF-8) can hold: not undecodable bytes (surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _exported_node(path: Path, state: State) -> tuple[tuple[str, GitNode] | None, str | None]:
    """``((url, node), note)`` for one folder under ``custom_nodes/``.

    The URL is written without credentials: a snapshot is shared and kept, and the note says
    what was removed (never the secret itself).
    """
    name = path.name
    head = gitops.read_head(path)
    record = state.nodes.get(name.removesuffix(".disabled"))
    url = record.url if record is not None else gitops.origin_url(path)
    if head is None or url is None:
        return None, (
            f"custom_nodes/{name}: no readable HEAD commit and origin URL (not a git checkout, "
            "or its .git is damaged); not exported"
        )
    clean, removed = without_credentials(url)
    note = None
    if removed:
        note = (
            f"custom_nodes/{name}: its origin URL carried {' and '.join(removed)}; exported "
            f"as {clean} (a private repository needs ssh:// and a key on the new machine)"
        )
    return (clean, GitNode(head, name.endswith(".disabled"))), note

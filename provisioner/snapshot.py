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

from provisioner import gitops, pyenv
from provisioner.errors import GitError, ManifestError
from provisioner.guard import is_guarded
from provisioner.layout import Layout
from provisioner.requirements import parse_requirement
from provisioner.state import State

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


def _pip_entry(key: str, value: str, mode: str) -> tuple[str | None, str | None]:
    """``(requirement, report)`` for one ``pips`` entry."""
    if key.startswith("-e") or key.startswith("--"):
        return None, f"pip {key!r}: editable/option entries are not portable"
    requirement = f"{key} @ {value}" if value else key
    try:
        req = parse_requirement(requirement)
    except ValueError as exc:
        return None, f"pip {key!r}: {exc}"
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
    for url, entry in snap.git_custom_nodes.items():
        if entry.disabled:
            reports.append(f"node {url}: disabled in the snapshot")
            continue
        try:
            gitops.check_url(url)
        except GitError as exc:
            reports.append(f"node {url}: {exc.message}")
            continue
        if not gitops.HEX40.match(entry.hash):
            reports.append(f"node {url}: hash {entry.hash!r} is not a commit")
            continue
        nodes.append({"url": url, "ref": entry.hash})
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
    packages: list[str] = []
    if pips == "none":
        if snap.pips:
            reports.append(f"{len(snap.pips)} pip entries skipped (--pips none)")
    else:
        for key, value in snap.pips.items():
            requirement, report = _pip_entry(key, value, pips)
            if requirement:
                packages.append(requirement)
            if report:
                reports.append(report)
    comfy = snap.comfyui
    if comfy is not None and not gitops.HEX40.match(comfy):
        reports.append(f"comfyui {comfy!r} is not a commit")
        comfy = None
    return Imported(comfy, tuple(nodes), tuple(packages), tuple(reports))


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
        notes.append(f"{comfyui_path}: no ComfyUI checkout; comfyui left empty")
    nodes: dict[str, GitNode] = {}
    files: list[dict[str, Any]] = []
    root = layout.custom_nodes
    entries = sorted(root.iterdir()) if root.is_dir() else []
    for path in entries:
        name = path.name
        if name in {"__pycache__", ".disabled"} or name.startswith("."):
            continue
        if path.is_file() and name.endswith((".py", ".py.disabled")):
            files.append({"filename": name, "disabled": name.endswith(".disabled")})
            continue
        if not path.is_dir():
            continue
        head = gitops.read_head(path)
        base = name.removesuffix(".disabled")
        record = state.nodes.get(base)
        url = record.url if record is not None else gitops.origin_url(path)
        if head is None or url is None:
            notes.append(f"custom_nodes/{name}: not a git checkout with an origin; not exported")
            continue
        nodes[url] = GitNode(head, name.endswith(".disabled"))
    pips: dict[str, str] = {}
    for key, dist in sorted(pyenv.installed_distributions(python).dists.items()):
        if key not in TOOLING:
            pips[f"{dist.name}=={dist.version}"] = ""
    return Snapshot(comfy, nodes, {}, tuple(files), pips), notes

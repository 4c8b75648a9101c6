"""Parsers for the item syntaxes users paste into env vars (pure; ``ValueError`` on bad input).

- HF: ``org/repo``, ``org/repo@revision``, ``org/repo:pattern``, ``org/repo@rev:pattern``, or a
  ``https://huggingface.co/org/repo/resolve/<rev>/<path>`` URL.
- Civitai: ``modelId``, ``modelId@versionId``, an AIR
  (``urn:air:flux1:lora:civitai:618692@691639``), or a civitai.com model / download URL.
- Nodes: ``https://host/owner/repo[.git][@ref]``, ``ssh://...``, ``git@host:owner/repo[@ref]``,
  ``file:///path/repo[@ref]``.
- Packages: PEP 508 requirements separated by commas, whitespace or newlines
  (``numpy>=1.26,<2`` keeps its comma).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from packaging.requirements import InvalidRequirement, Requirement

_HF_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}"
_HF_ITEM = re.compile(
    rf"^(?P<repo>{_HF_NAME}/{_HF_NAME})(?:@(?P<rev>[^:\s@]+))?(?::(?P<pattern>[^\s]+))?$"
)
_HF_HOSTS = {"huggingface.co", "www.huggingface.co", "hf.co"}
_CIVITAI_HOSTS = {"civitai.com", "www.civitai.com", "civitai.green"}
_AIR = re.compile(
    r"^urn:air:(?P<eco>[a-z0-9_.-]+):(?P<type>[a-z0-9_.-]+):civitai:(?P<model>\d+)(?:@(?P<ver>\d+))?$",
    re.IGNORECASE,
)
_ID = re.compile(r"^(?P<model>\d+)(?:@(?P<ver>\d+))?$")
_NODE_SCP = re.compile(r"^git@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^@\s]+?)(?:@(?P<ref>[^@\s/]+))?$")
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


@dataclass(frozen=True)
class HFItem:
    """A parsed HF item."""

    repo: str
    revision: str | None
    pattern: str | None


@dataclass(frozen=True)
class CivitaiRef:
    """A parsed Civitai reference; at least one of the ids is set."""

    model_id: int | None
    version_id: int | None

    @property
    def key(self) -> str:
        """Identity used in plan, state and lock: ``ID``, ``ID@VER`` or ``@VER``."""
        model = "" if self.model_id is None else str(self.model_id)
        return f"{model}@{self.version_id}" if self.version_id is not None else model


@dataclass(frozen=True)
class NodeItem:
    """A parsed custom node URL."""

    url: str
    ref: str | None
    name: str


def parse_hf_item(text: str) -> HFItem:
    """Parse one HF item; raises ``ValueError`` saying what was expected."""
    text = text.strip()
    if text.startswith(("http://", "https://")):
        return _parse_hf_url(text)
    m = _HF_ITEM.match(text)
    if not m:
        raise ValueError(
            "expected 'org/repo', 'org/repo@revision', 'org/repo:file-or-glob' or a "
            "https://huggingface.co/org/repo/resolve/<rev>/<path> URL"
        )
    return HFItem(m["repo"], m["rev"], m["pattern"])


def _parse_hf_url(text: str) -> HFItem:
    parts = urlsplit(text)
    segs = [unquote(s) for s in parts.path.split("/") if s]
    if parts.hostname not in _HF_HOSTS:
        raise ValueError(f"expected a huggingface.co URL, found host {parts.hostname!r}")
    if len(segs) >= 5 and segs[2] in {"resolve", "blob"}:
        return HFItem(f"{segs[0]}/{segs[1]}", segs[3], "/".join(segs[4:]))
    if len(segs) == 2:
        return HFItem(f"{segs[0]}/{segs[1]}", None, None)
    raise ValueError("expected https://huggingface.co/org/repo/resolve/<revision>/<path/to/file>")


def parse_civitai_ref(text: str) -> CivitaiRef:
    """Parse a Civitai id, ``id@version``, AIR URN, or civitai.com URL."""
    text = text.strip()
    m = _ID.match(text)
    if m:
        return CivitaiRef(int(m["model"]), int(m["ver"]) if m["ver"] else None)
    m = _AIR.match(text)
    if m:
        return CivitaiRef(int(m["model"]), int(m["ver"]) if m["ver"] else None)
    if text.startswith(("http://", "https://")):
        return _parse_civitai_url(text)
    raise ValueError(
        "expected a model id (618692), 'modelId@versionId' (618692@691639), an AIR "
        "(urn:air:flux1:lora:civitai:618692@691639) or a civitai.com model/download URL"
    )


def _parse_civitai_url(text: str) -> CivitaiRef:
    parts = urlsplit(text)
    if (parts.hostname or "").lower() not in _CIVITAI_HOSTS:
        raise ValueError(f"expected a civitai.com URL, found host {parts.hostname!r}")
    segs = [s for s in parts.path.split("/") if s]
    query = parse_qs(parts.query)
    version = query.get("modelVersionId", [None])[0]
    if len(segs) >= 2 and segs[0] == "models" and segs[1].isdigit():
        if version is not None and not version.isdigit():
            raise ValueError("modelVersionId in the URL must be a number")
        return CivitaiRef(int(segs[1]), int(version) if version else None)
    if len(segs) >= 4 and segs[:3] == ["api", "download", "models"] and segs[3].isdigit():
        return CivitaiRef(None, int(segs[3]))
    raise ValueError(
        "expected https://civitai.com/models/<id>[?modelVersionId=<v>] or "
        "https://civitai.com/api/download/models/<versionId>"
    )


def parse_node_item(text: str) -> NodeItem:
    """Parse a custom node git URL with an optional ``@ref``."""
    text = text.strip()
    m = _NODE_SCP.match(text)
    if m:
        url, ref = f"git@{m['host']}:{m['path']}", m["ref"]
    elif text.startswith(("https://", "ssh://", "file://")):
        parts = urlsplit(text)
        if parts.password is not None or (parts.username and parts.scheme == "https"):
            raise ValueError(
                "credentials inside a node URL would be logged and persisted; use a public "
                "https URL or ssh:// with a deploy key"
            )
        if parts.query or parts.fragment:
            raise ValueError("a node URL takes no ?query or #fragment; pin with '@ref'")
        path, ref = parts.path, None
        last = path.rsplit("/", 1)[-1]
        if "@" in last:
            last, ref = last.split("@", 1)
            path = path.rsplit("/", 1)[0] + "/" + last
        url = f"{parts.scheme}://{parts.netloc}{path}"
    elif text.startswith("http://"):
        raise ValueError("plain http:// is not accepted for code; use https://")
    else:
        raise ValueError(
            "expected https://host/owner/repo[.git][@ref], ssh://..., git@host:owner/repo or "
            "file:///path/repo"
        )
    if ref is not None and not _REF.match(ref):
        raise ValueError(f"invalid git ref {ref!r}")
    name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    name = name[:-4] if name.endswith(".git") else name
    if not name or name in {".", ".."} or not re.match(r"^[A-Za-z0-9_.-]+$", name):
        raise ValueError(f"cannot derive a folder name from {url!r}")
    return NodeItem(url, ref, name)


_STARTS_REQ = re.compile(r"^[A-Za-z0-9]")
_CONTINUES = ("<", ">", "=", "!", "~", ";", "'", '"', "(", ")")


def split_requirements(text: str) -> list[str]:
    """Split a list of PEP 508 requirements on commas, whitespace and newlines.

    A fragment that cannot start a requirement (``<2`` after ``numpy>=1.26,``, a marker after
    ``;``) is joined back to the one before it. Each result is validated; raises ``ValueError``
    naming the bad item.
    """
    fragments = _fragments(text)
    items: list[list[str]] = []
    for frag, sep in fragments:
        joins = items and (
            not _STARTS_REQ.match(frag)
            or frag.lower() in {"and", "or", "in", "not"}
            or items[-1][-1].rstrip().endswith((";", "and", "or", *_CONTINUES[:5], "[", ","))
            or _open_brackets("".join(items[-1])) > 0
        )
        if joins:
            items[-1].append(sep + frag)
        else:
            items.append([frag])
    result = []
    for parts in items:
        item = "".join(parts).strip()
        try:
            Requirement(item)
        except InvalidRequirement as exc:
            raise ValueError(f"{item!r} is not a valid PEP 508 requirement: {exc}") from exc
        result.append(item)
    return result


def _fragments(text: str) -> list[tuple[str, str]]:
    """Fragments with the separator that preceded each (kept for re-joining)."""
    out: list[tuple[str, str]] = []
    for m in re.finditer(r"([,\s]*)([^,\s]+)", text):
        sep = "," if "," in m.group(1) else " "
        out.append((m.group(2), sep))
    return out


def _open_brackets(text: str) -> int:
    return text.count("[") - text.count("]") + text.count("(") - text.count(")")

"""Parsers for the item syntaxes users paste into env vars (pure; ``ValueError`` on bad input).

- HF: ``org/repo``, ``org/repo@revision``, ``org/repo:pattern``, ``org/repo@rev:pattern``, or a
  ``https://huggingface.co/org/repo/resolve/<rev>/<path>`` URL.
- Civitai: ``modelId``, ``modelId@versionId``, an AIR
  (``urn:air:flux1:lora:civitai:618692@691639``), or a civitai.com model / download URL.
- Nodes: ``https://host/owner/repo[.git][@ref]``, ``ssh://...``, ``git@host:owner/repo[@ref]``,
  ``file:///path/repo[@ref]``.
- Packages: see :func:`provisioner.core.requirements.split_requirements`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

_HF_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}"
_HF_ITEM = re.compile(
    rf"^(?P<repo>{_HF_NAME}/{_HF_NAME})(?:@(?P<rev>[^:\s@]+))?(?::(?P<pattern>[^\s]+))?$"
)
_HF_HOSTS = {"huggingface.co", "www.huggingface.co", "hf.co"}
_CIVITAI_HOSTS = frozenset({"civitai.com", "www.civitai.com", "civitai.green", "www.civitai.green"})
_ID = re.compile(r"^(\d+)(?:@(\d+))?\Z")
_AIR = re.compile(
    r"^urn:air:(?P<eco>[a-z0-9_.-]+):(?P<type>[a-z0-9_.-]+):(?P<source>[a-z0-9_-]+):"
    r"(?P<id>[^@\s]+?)(?:@(?P<ver>[^.\s]+))?(?:\.(?P<fmt>[a-z0-9]+))?$",
    re.IGNORECASE,
)
_FORMS = (
    "a model id (618692), 'modelId@versionId' (618692@691639), an AIR "
    "(urn:air:flux1:lora:civitai:618692@691639), https://civitai.com/models/<id>"
    "[?modelVersionId=<v>] or https://civitai.com/api/download/models/<versionId>"
)


_NODE_SCP = re.compile(r"^git@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^@\s]+?)(?:@(?P<ref>[^@\s/]+))?\Z")
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}\Z")


@dataclass(frozen=True)
class HFItem:
    """A parsed HF item."""

    repo: str
    revision: str | None
    pattern: str | None


@dataclass(frozen=True)
class CivitaiRef:
    """A parsed Civitai reference; at least one id is set (a download URL names only a version)."""

    model_id: int | None
    version_id: int | None

    @property
    def canonical(self) -> str:
        """The one spelling Phoenix stores: ``ID``, ``ID@VER``, or the download URL of a
        version whose model is not named."""
        if self.model_id is None:
            return f"https://civitai.com/api/download/models/{self.version_id}"
        return self.key

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


_CREDENTIAL_KEYS = re.compile(
    r"token|key|auth|sig|signature|secret|password|passwd|credential|session|jwt", re.IGNORECASE
)


_HTTP_SCHEMES = frozenset({"http", "https"})


def without_credentials(url: str) -> tuple[str, list[str]]:
    """``url`` without what must not be written down, and what that was (empty: nothing).

    Removed: a user name or password before the host (only the password for ``ssh://``, whose
    user name is the login, e.g. ``git@``), a ``?query`` and a ``#fragment`` (tokens travel
    there). ``git@host:path`` carries neither.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url, []
    cut = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    netloc, tail = rest[: min(cut, default=len(rest))], rest[min(cut, default=len(rest)) :]
    removed: list[str] = []
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        keep_user = scheme.lower() not in _HTTP_SCHEMES and bool(user)
        if colon or not keep_user:
            removed.append("a user name or password before the host")
        netloc = f"{user}@{host}" if keep_user else host
    path = tail.split("?", 1)[0].split("#", 1)[0]
    if path != tail:
        removed.append("a ?query or #fragment")
    return f"{scheme}://{netloc}{path}", removed


def credential_in_url(url: str) -> str | None:
    """What in ``url`` looks like a credential (``user:password@``, ``?token=``), or None.

    Such URLs would be printed in the plan and stored in the state and lock files, so they are
    refused; tokens travel only in their own variables, as headers.
    """
    parts = urlsplit(url)
    if parts.password is not None or (parts.username and parts.scheme in {"http", "https"}):
        return "a user name or password before the host"
    for key, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _CREDENTIAL_KEYS.search(key):
            return f"the query parameter {key!r}"
    return None


def _refuse_credentials(url: str, instead: str) -> None:
    found = credential_in_url(url)
    if found:
        raise ValueError(
            f"the URL carries a credential ({found}); it would be printed in the plan and "
            f"stored in state and lock files: {instead}"
        )


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
    _refuse_credentials(text, "remove it and set HUGGINGFACE_TOKEN instead")
    parts = urlsplit(text)
    segs = [unquote(s) for s in parts.path.split("/") if s]
    if parts.hostname not in _HF_HOSTS:
        raise ValueError(f"expected a huggingface.co URL, found host {parts.hostname!r}")
    if len(segs) >= 5 and segs[2] in {"resolve", "blob"}:
        return HFItem(f"{segs[0]}/{segs[1]}", segs[3], "/".join(segs[4:]))
    if len(segs) == 2:
        return HFItem(f"{segs[0]}/{segs[1]}", None, None)
    raise ValueError("expected https://huggingface.co/org/repo/resolve/<revision>/<path/to/file>")


def parse_civitai_ref(text: str | int) -> CivitaiRef:
    """Parse a Civitai reference; ``ValueError`` says what was found and what is accepted."""
    if isinstance(text, int):
        if text <= 0:
            raise ValueError(f"a Civitai model id must be positive, found {text}")
        return CivitaiRef(text, None)
    raw = text.strip()
    if not raw:
        raise ValueError(f"empty Civitai reference; expected {_FORMS}")
    match = _ID.match(raw)
    if match:
        return _ref(match.group(1), match.group(2), raw)
    if raw.lower().startswith("urn:"):
        return _parse_air(raw)
    if re.match(r"^(https?://)?(www\.)?civitai\.(com|green)(/|$)", raw, re.IGNORECASE):
        return _parse_url(raw if "://" in raw else f"https://{raw}")
    if raw.lower().startswith(("http://", "https://")):
        host = urlsplit(raw).hostname
        raise ValueError(f"expected a civitai.com URL, found host {host!r} in {raw!r}")
    raise ValueError(f"cannot read {raw!r} as a Civitai reference; expected {_FORMS}")


def _ref(model: str | None, version: str | None, raw: str) -> CivitaiRef:
    model_id = int(model) if model else None
    version_id = int(version) if version else None
    if model_id == 0 or version_id == 0:
        raise ValueError(f"Civitai ids must be positive, found {raw!r}")
    return CivitaiRef(model_id, version_id)


def _parse_air(raw: str) -> CivitaiRef:
    match = _AIR.match(raw)
    if not match:
        raise ValueError(
            f"malformed AIR {raw!r}; expected urn:air:<ecosystem>:<type>:civitai:<modelId>"
            "[@<versionId>], e.g. urn:air:flux1:lora:civitai:618692@691639"
        )
    if match["source"].lower() != "civitai":
        raise ValueError(f"AIR {raw!r} names source {match['source']!r}, not civitai")
    if not match["id"].isdigit() or (match["ver"] is not None and not match["ver"].isdigit()):
        raise ValueError(f"AIR {raw!r}: Civitai model and version ids must be numbers")
    return _ref(match["id"], match["ver"], raw)


def _parse_url(raw: str) -> CivitaiRef:
    _refuse_credentials(raw, "remove it and set CIVITAI_TOKEN instead")
    parts = urlsplit(raw)
    segments = [s for s in parts.path.split("/") if s]
    query = parse_qs(parts.query)
    versions = query.get("modelVersionId") or []
    version = versions[0] if versions else None
    if version is not None and not version.isdigit():
        raise ValueError(f"modelVersionId in {raw!r} must be a number, found {version!r}")
    if len(segments) >= 2 and segments[0] == "models":
        if not segments[1].isdigit():
            raise ValueError(f"model id in {raw!r} must be a number, found {segments[1]!r}")
        return _ref(segments[1], version, raw)
    if segments[:3] == ["api", "download", "models"] and len(segments) == 4:
        if not segments[3].isdigit():
            raise ValueError(f"version id in {raw!r} must be a number, found {segments[3]!r}")
        return _ref(None, segments[3], raw)
    raise ValueError(
        f"unrecognised civitai.com URL {raw!r}; expected https://civitai.com/models/<id>"
        "[/<slug>][?modelVersionId=<v>] or https://civitai.com/api/download/models/<versionId>"
    )


def parse_node_item(text: str, name: str | None = None) -> NodeItem:
    """Parse a custom node git URL with an optional ``@ref``; the folder ``name`` is derived
    from the URL unless given (the URL is checked either way)."""
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
    if name is None:
        name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        name = name[:-4] if name.endswith(".git") else name
        if not name or name in {".", ".."} or not re.match(r"^[A-Za-z0-9_.-]+$", name):
            raise ValueError(f"cannot derive a folder name from {url!r}; give the node a 'name'")
    return NodeItem(url, ref, name)

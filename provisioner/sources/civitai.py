"""Civitai: parse every accepted reference form and resolve it to one verified file.

Resolution uses the public REST API (``/api/v1/models/{id}``, ``/api/v1/model-versions/{id}``)
under ``api_base`` (``CIVITAI_API_BASE``, default ``https://civitai.com``). The token travels
only as an ``Authorization`` header to the API's own host (:class:`HostScopedBearer`), never in
a URL. The file's ``hashes.SHA256`` becomes the trusted hash the download engine verifies.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from provisioner.core.errors import AuthError, NotFoundError, SourceError
from provisioner.manifest.items import parse_civitai_ref
from provisioner.manifest.models import CivitaiModel
from provisioner.sources.download import DownloadResult, download
from provisioner.sources.http import (
    DEFAULT_RETRY,
    HostScopedBearer,
    NoAuth,
    RetryPolicy,
    get_with_retries,
)
from provisioner.sources.names import safe_filename
from provisioner.sources.progress import Progress

DEFAULT_API_BASE = "https://civitai.com"

#: Civitai model type → ComfyUI model folder. Types with no folder (Poses, Wildcards,
#: Workflows, Other, AestheticGradient) map to None and are left to the organizer.
TYPE_FOLDERS: dict[str, str] = {
    "checkpoint": "checkpoints",
    "lora": "loras",
    "locon": "loras",
    "lycoris": "loras",
    "dora": "loras",
    "vae": "vae",
    "textualinversion": "embeddings",
    "controlnet": "controlnet",
    "upscaler": "upscale_models",
    "hypernetwork": "hypernetworks",
    "motionmodule": "animatediff_models",
    "detection": "ultralytics",
}


@dataclass(frozen=True)
class CivitaiFile:
    """One resolved file of a model version. ``size`` is approximate (the API gives KB).

    ``folder`` is the ComfyUI folder the API's model type suggests (None: let the organizer
    decide); ``name`` is already a safe single file name.
    """

    model_id: int
    version_id: int
    file_id: int
    name: str
    download_url: str
    sha256: str
    size: int | None
    folder: str | None
    model_name: str
    version_name: str

    @property
    def label(self) -> str:
        """``civitai:MODEL@VERSION`` for messages and progress."""
        return f"civitai:{self.model_id}@{self.version_id}"


def folder_for_type(model_type: str | None) -> str | None:
    """The ComfyUI folder for a Civitai model type (case-insensitive); None when unknown."""
    if not model_type:
        return None
    return TYPE_FOLDERS.get(model_type.replace(" ", "").lower())


def resolve_civitai(
    entry: CivitaiModel,
    *,
    session: requests.Session,
    api_base: str = DEFAULT_API_BASE,
    token: str | None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> CivitaiFile:
    """Resolve a manifest entry to one file: version (latest published unless pinned), file
    (primary unless ``format``/``fp``/``size`` narrow it), trusted SHA256, and folder.

    Raises :class:`AuthError` (401/403), :class:`NotFoundError` (404), :class:`SourceError`
    (early access, no matching file, no hash, conflicting hashes, API failures).
    """
    ref = parse_civitai_ref(entry.civitai)
    client = _Api(session, api_base.rstrip("/"), token, retry, f"civitai:{ref.key}")
    if ref.version_id is not None:
        version = client.get(f"/api/v1/model-versions/{ref.version_id}")
        model_id = _int(version.get("modelId"), ref.model_id)
        if ref.model_id is not None and model_id != ref.model_id:
            raise NotFoundError(
                f"Civitai version {ref.version_id} belongs to model {model_id}, not {ref.model_id}",
                where=client.where,
                hint=f"use {model_id}@{ref.version_id}, or the right version of {ref.model_id}",
            )
        model = _dict(version.get("model"))
        _refuse_early_access(version, client.where, token)
    else:
        assert ref.model_id is not None
        model_id = ref.model_id
        model = client.get(f"/api/v1/models/{ref.model_id}")
        version = _latest_published(model, client.where)
    chosen = _pick_file(entry, version, client.where)
    return _to_file(entry, model_id, model, version, chosen, client.where)


class _Api:
    """GETs against the Civitai API with the token scoped to its host, errors mapped."""

    def __init__(
        self,
        session: requests.Session,
        base: str,
        token: str | None,
        retry: RetryPolicy,
        where: str,
    ) -> None:
        self.session = session
        self.base = base
        self.auth = HostScopedBearer(token, base) if token else None
        self.retry = retry
        self.where = where
        self.has_token = bool(token)

    def get(self, path: str) -> dict[str, Any]:
        url = f"{self.base}{path}"
        try:
            response = get_with_retries(
                self.session,
                url,
                retry=self.retry,
                auth=self.auth,
                headers={"Accept": "application/json"},
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise SourceError(
                f"cannot reach the Civitai API at {self.base}: {type(exc).__name__}",
                where=self.where,
                hint="check the network, or CIVITAI_API_BASE if you use a proxy",
            ) from None
        with response:
            status = response.status_code
            if status in (401, 403):
                raise AuthError(
                    f"Civitai refused access to {self.where} (HTTP {status})",
                    where=self.where,
                    hint="the token in CIVITAI_TOKEN was refused or lacks access to this model"
                    if self.has_token
                    else "set CIVITAI_TOKEN to an API key from https://civitai.com/user/account",
                )
            if status == 404:
                raise NotFoundError(
                    f"Civitai model or version not found: {self.where}",
                    where=self.where,
                    hint="check the id on civitai.com; unpublished versions are not served",
                )
            if status != 200:
                raise SourceError(
                    f"the Civitai API answered HTTP {status} for {path}",
                    where=self.where,
                    hint="try again later",
                )
            try:
                body = response.json()
            except ValueError:
                body = None
        if not isinstance(body, dict):
            raise SourceError(
                f"the Civitai API sent an unreadable answer for {path}", where=self.where
            )
        return body


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any, default: int | None, what: str = "model id") -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if default is None:
        raise SourceError(f"the Civitai API answer lacks a {what}")
    return default


def _is_early_access(version: dict[str, Any]) -> bool:
    return version.get("availability") == "EarlyAccess" or bool(version.get("earlyAccessEndsAt"))


def _is_published(version: dict[str, Any]) -> bool:
    status = version.get("status")
    availability = version.get("availability")
    return status in (None, "Published") and availability not in ("Private", "EarlyAccess")


def _refuse_early_access(version: dict[str, Any], where: str, token: str | None) -> None:
    status = version.get("status")
    if status not in (None, "Published"):
        raise SourceError(
            f"Civitai version {version.get('id')} of {where} is not published (status {status})",
            where=where,
            hint="pin a published version",
        )
    if _is_early_access(version) and not token:
        ends = version.get("earlyAccessEndsAt")
        raise AuthError(
            f"Civitai version {version.get('id')} of {where} is in early access"
            + (f" until {ends}" if ends else ""),
            where=where,
            hint="set CIVITAI_TOKEN for an account that unlocked it, or pin a public version",
        )


def _latest_published(model: dict[str, Any], where: str) -> dict[str, Any]:
    versions = [v for v in model.get("modelVersions") or [] if isinstance(v, dict)]
    for version in versions:  # the API lists the newest first
        if _is_published(version) and version.get("files"):
            return version
    skipped = [
        f"{v.get('id')} ({'early access' if _is_early_access(v) else v.get('status') or 'private'})"
        for v in versions
        if not _is_published(v)
    ]
    detail = f"; skipped {', '.join(skipped)}" if skipped else ""
    raise SourceError(
        f"Civitai model {where} has no published version with files{detail}",
        where=where,
        hint="pin a version with 'id@versionId' once one is public",
    )


def _pick_file(entry: CivitaiModel, version: dict[str, Any], where: str) -> dict[str, Any]:
    files = [f for f in version.get("files") or [] if isinstance(f, dict)]
    wanted = {
        k: v
        for k, v in (("format", entry.format), ("fp", entry.fp), ("size", entry.size))
        if v is not None
    }
    if wanted:

        def fits(f: dict[str, Any]) -> bool:
            meta = _dict(f.get("metadata"))
            return all(str(meta.get(k, "")).lower() == str(v).lower() for k, v in wanted.items())

        candidates = [f for f in files if fits(f)]
        if not candidates:
            offered = ", ".join(_describe(f) for f in files) or "none"
            raise SourceError(
                f"no file of Civitai version {version.get('id')} matches "
                + ", ".join(f"{k}={v}" for k, v in wanted.items()),
                where=where,
                hint=f"files offered: {offered}",
            )
    else:
        candidates = [f for f in files if f.get("type") in (None, "Model", "Pruned Model")] or files
    if not candidates:
        raise SourceError(f"Civitai version {version.get('id')} has no files", where=where)
    primary = [f for f in candidates if f.get("primary")]
    return (primary or candidates)[0]


def _describe(f: dict[str, Any]) -> str:
    meta = _dict(f.get("metadata"))
    bits = "/".join(str(meta.get(k)) for k in ("format", "fp", "size") if meta.get(k))
    return f"{f.get('name')} ({bits})" if bits else str(f.get("name"))


def _to_file(
    entry: CivitaiModel,
    model_id: int,
    model: dict[str, Any],
    version: dict[str, Any],
    chosen: dict[str, Any],
    where: str,
) -> CivitaiFile:
    hashes = _dict(chosen.get("hashes"))
    api_sha = str(hashes.get("SHA256") or "").lower() or None
    pinned = entry.sha256.lower() if entry.sha256 else None
    if api_sha and not re.fullmatch(r"[0-9a-f]{64}", api_sha):
        raise SourceError(f"the Civitai API gave a malformed SHA256 for {where}", where=where)
    if api_sha and pinned and api_sha != pinned:
        raise SourceError(
            f"the manifest's sha256 {pinned} differs from Civitai's {api_sha} for {where}",
            where=where,
            hint="remove or update 'sha256' in the manifest if the new file is trusted",
        )
    sha = pinned or api_sha
    if not sha:
        raise SourceError(
            f"Civitai gives no SHA256 for {chosen.get('name')} of {where}; nothing unverified "
            "is placed",
            where=where,
            hint="add 'sha256' to the manifest entry",
        )
    url = chosen.get("downloadUrl") or version.get("downloadUrl")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise SourceError(f"the Civitai API gave no download URL for {where}", where=where)
    try:
        name = safe_filename(str(chosen.get("name") or ""))
    except ValueError:
        name = f"civitai-{model_id}-{version.get('id')}.safetensors"
    size_kb = chosen.get("sizeKB")
    model_type = model.get("type") if isinstance(model.get("type"), str) else None
    return CivitaiFile(
        model_id=model_id,
        version_id=_int(version.get("id"), None, "version id"),
        file_id=_int(chosen.get("id"), None, "file id"),
        name=name,
        download_url=url,
        sha256=sha,
        size=round(float(size_kb) * 1024) if isinstance(size_kb, (int, float)) else None,
        folder=folder_for_type(model_type),
        model_name=str(model.get("name") or ""),
        version_name=str(version.get("name") or ""),
    )


def download_civitai_file(
    file: CivitaiFile,
    dest: Path,
    *,
    session: requests.Session,
    staging: Path,
    api_base: str = DEFAULT_API_BASE,
    token: str | None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    connections: int = 1,
) -> DownloadResult:
    """Fetch ``file`` to ``dest`` through the engine, verified against the API's SHA256.

    The token rides only on requests to ``api_base``'s host (the download route); the CDN that
    Civitai redirects to never receives it. A 401/403 says to set ``CIVITAI_TOKEN``. Setting
    ``cancel`` stops the transfer at the next block (the partial file is kept for a resume);
    ``connections`` > 1 fetches a large file over that many connections, each with the same
    token rules.
    """
    auth: requests.auth.AuthBase = HostScopedBearer(token, api_base) if token else NoAuth()
    try:
        return download(
            file.download_url,
            dest,
            staging=staging,
            expected_sha256=file.sha256,
            session=session,
            expected_size=file.size,
            progress=progress,
            label=file.label,
            auth=auth,
            cancel=cancel,
            connections=connections,
        )
    except AuthError as exc:
        raise AuthError(
            f"Civitai refused the download of {file.label} ({file.model_name} {file.version_name})",
            where=exc.where,
            hint="the token in CIVITAI_TOKEN was refused or lacks access to this model"
            if token
            else "set CIVITAI_TOKEN to an API key from https://civitai.com/user/account",
        ) from None


def civitai_api_base() -> str:
    """``CIVITAI_API_BASE`` at call time, else civitai.com."""
    return (os.environ.get("CIVITAI_API_BASE") or DEFAULT_API_BASE).rstrip("/")

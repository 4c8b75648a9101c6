"""Plain URL source: a file from an http(s) URL, verified against the manifest's SHA256.

No token is ever sent for a plain URL: the transfer overrides the session's auth with
:class:`~provisioner.sources.http.NoAuth`, even when the URL is on a host that has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests

from provisioner.core.errors import SourceError
from provisioner.manifest.models import URLModel
from provisioner.sources.download import DownloadResult, download
from provisioner.sources.http import NoAuth
from provisioner.sources.names import safe_filename
from provisioner.sources.progress import Progress


@dataclass(frozen=True)
class URLFile:
    """A plain URL resolved offline: where from, the safe file name, the trusted hash."""

    url: str
    name: str
    sha256: str
    folder: str | None


def resolve_url(entry: URLModel) -> URLFile:
    """Name and hash for ``entry``; the name is ``entry.name`` or the URL's last segment."""
    parts = urlsplit(entry.url)  # credentials were refused when the manifest was validated
    raw = entry.name or unquote(parts.path.rsplit("/", 1)[-1])
    try:
        name = safe_filename(raw)
    except ValueError:
        raise SourceError(
            f"cannot derive a file name from {entry.url.split('?', 1)[0]!r}",
            where=f"url:{entry.url.split('?', 1)[0]}",
            hint="set 'name' on the manifest entry",
        ) from None
    return URLFile(entry.url, name, entry.sha256.lower(), entry.type)


def download_url_file(
    file: URLFile,
    dest: Path,
    *,
    staging: Path,
    session: requests.Session,
    progress: Progress | None = None,
    expected_size: int | None = None,
) -> DownloadResult:
    """Fetch ``file`` to ``dest`` through the engine, verified, with no credentials attached."""
    return download(
        file.url,
        dest,
        staging=staging,
        expected_sha256=file.sha256,
        session=session,
        expected_size=expected_size,
        progress=progress,
        label=f"url:{dest.name}",
        auth=NoAuth(),
    )

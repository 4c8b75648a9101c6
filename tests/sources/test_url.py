"""Plain URL source: required sha256, safe name, never a token."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests
from pydantic import ValidationError

from provisioner.core.errors import IntegrityError, SourceError
from provisioner.manifest.models import URLModel
from provisioner.sources.http import attach_bearer
from provisioner.sources.url import download_url_file, resolve_url
from tests.support.civitai import LoopbackHub, Served

DATA = b"upscaler-weights" * 4096


def entry(url: str, **extra: object) -> URLModel:
    return URLModel.model_validate(
        {"url": url, "sha256": hashlib.sha256(DATA).hexdigest().upper(), **extra}
    )


def test_name_from_url_or_entry() -> None:
    assert resolve_url(entry("https://h/x/4x-Ultra%20Sharp.pth?dl=1")).name == "4x-Ultra Sharp.pth"
    got = resolve_url(entry("https://h/download", name="model.safetensors", type="upscale_models"))
    assert (got.name, got.folder) == ("model.safetensors", "upscale_models")
    assert got.sha256 == hashlib.sha256(DATA).hexdigest()


def test_url_with_credentials_or_without_a_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="carries a credential"):
        entry("https://user:pw@h/x.pt")
    with pytest.raises(SourceError, match="cannot derive a file name") as info:
        resolve_url(entry("https://h/"))
    assert "set 'name'" in info.value.render()


def test_download_verifies_and_never_sends_a_token(
    hub: LoopbackHub, session: requests.Session, root: Path, staging: Path
) -> None:
    url = hub.serve("4x.pth", Served(data=DATA))
    attach_bearer(session, "tok-civitai-x", hub.cdn_base)  # even on a host that has a token
    file = resolve_url(entry(url))
    dest = root / "models" / "upscale_models" / file.name

    result = download_url_file(file, dest, staging=staging, session=session)

    assert result.sha256 == file.sha256 and dest.read_bytes() == DATA
    (record,) = hub.requests_to("/files/")
    assert "Authorization" not in record.headers


def test_wrong_bytes_are_refused(
    hub: LoopbackHub, session: requests.Session, root: Path, staging: Path
) -> None:
    url = hub.serve("bad.pth", Served(data=DATA + b"!"))
    with pytest.raises(IntegrityError, match=r"url:bad\.pth"):
        download_url_file(
            resolve_url(entry(url)), root / "bad.pth", staging=staging, session=session
        )
    assert not (root / "bad.pth").exists()

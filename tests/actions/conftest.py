"""Fixtures for action tests: the Hugging Face hub (olah) and the Civitai-like hub on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.civitai import LoopbackHub, running_hub


@pytest.fixture
def civitai(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackHub]:
    """The Civitai-like API + CDN, with CIVITAI_API_BASE pointed at it."""
    for hub in running_hub():
        monkeypatch.setenv("CIVITAI_API_BASE", hub.api_base)
        yield hub

"""Fixtures for action tests: the Civitai-like hub with CIVITAI_API_BASE pointed at it."""

from __future__ import annotations

import pytest

from tests.support.civitai import LoopbackHub


@pytest.fixture
def civitai(civitai: LoopbackHub, monkeypatch: pytest.MonkeyPatch) -> LoopbackHub:
    """The suite's Civitai-like API + CDN, with CIVITAI_API_BASE pointed at it."""
    monkeypatch.setenv("CIVITAI_API_BASE", civitai.api_base)
    return civitai

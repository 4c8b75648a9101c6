"""Fixtures for action tests: the Hugging Face hub (olah) and the Civitai-like hub on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from provisioner.redact import forget_secrets
from tests.fixtures.hub import FluxHub, build_flux_hub
from tests.sources.loopback import LoopbackHub, running_hub


@pytest.fixture(scope="session")
def flux_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FluxHub]:
    """olah serving FLUX-like mirrors behind a counting proxy; shared by the session."""
    yield from build_flux_hub(tmp_path_factory.mktemp("hub"))


@pytest.fixture
def hf_endpoint(flux_hub: FluxHub, monkeypatch: pytest.MonkeyPatch) -> str:
    """HF_ENDPOINT pointed at the test hub, with the proxy's request log cleared."""
    monkeypatch.setenv("HF_ENDPOINT", flux_hub.endpoint)
    flux_hub.proxy.reset()
    return flux_hub.endpoint


@pytest.fixture
def civitai(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackHub]:
    """The Civitai-like API + CDN, with CIVITAI_API_BASE pointed at it."""
    for hub in running_hub():
        monkeypatch.setenv("CIVITAI_API_BASE", hub.api_base)
        yield hub


@pytest.fixture(autouse=True)
def _no_leftover_secrets() -> Iterator[None]:
    yield
    forget_secrets()

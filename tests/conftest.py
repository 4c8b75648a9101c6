"""Fixtures for the whole suite; their code lives in tests/support/ (see tests/README.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from provisioner.core.redact import forget_secrets
from tests.support.civitai import LoopbackHub, running_hub
from tests.support.hub import FluxHub, build_flux_hub

#: wheelhouse, image_python, software_env, sw_layout, sw_repos
pytest_plugins = ["tests.support.software"]


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    forget_secrets()


@pytest.fixture(scope="session")
def flux_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FluxHub]:
    """olah serving FLUX-like mirrors behind a counting proxy; shared by the session."""
    yield from build_flux_hub(tmp_path_factory.mktemp("hub"))


@pytest.fixture
def civitai() -> Iterator[LoopbackHub]:
    """A fresh Civitai-like API + CDN on loopback (CIVITAI_API_BASE is left alone)."""
    yield from running_hub()


@pytest.fixture
def hf_endpoint(flux_hub: FluxHub, monkeypatch: pytest.MonkeyPatch) -> str:
    """HF_ENDPOINT pointed at the test hub, with the proxy's request log cleared."""
    monkeypatch.setenv("HF_ENDPOINT", flux_hub.endpoint)
    flux_hub.proxy.reset()
    return flux_hub.endpoint

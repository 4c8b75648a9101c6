"""Fixtures for sources: a Civitai-like API + CDN and a Hugging Face Hub (olah) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from provisioner.sources.http import RetryPolicy, make_session
from tests.support.civitai import LoopbackHub, running_hub


@pytest.fixture
def hub() -> Iterator[LoopbackHub]:
    """The API server (127.0.0.1) and its CDN (127.0.0.2, or another port), fresh per test."""
    yield from running_hub()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A session from the one factory, closed after the test."""
    with make_session() as s:
        yield s


@pytest.fixture
def quick_retry() -> RetryPolicy:
    """Retries with millisecond backoffs so fault tests stay fast."""
    return RetryPolicy(
        attempts=4,
        backoff_base=0.01,
        backoff_max=0.05,
        retry_after_max=5.0,
        timeout_connect=5.0,
        timeout_read=5.0,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A workspace root with models/ and .phoenix/staging/ on one filesystem."""
    (tmp_path / "models").mkdir()
    (tmp_path / ".phoenix" / "staging").mkdir(parents=True)
    return tmp_path


@pytest.fixture
def staging(root: Path) -> Path:
    return root / ".phoenix" / "staging"

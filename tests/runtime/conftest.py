"""Fixtures for runtime tests; the pod they start is tests/support/pod.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.pod import Pod


@pytest.fixture
def pod_factory(tmp_path: Path) -> Iterator[Any]:
    pods: list[Pod] = []

    def make(**overrides: Any) -> Pod:
        pod = Pod(tmp_path / f"pod{len(pods)}", **overrides)
        pods.append(pod)
        return pod

    for sub in ("pod0", "pod1"):
        (tmp_path / sub).mkdir()
    yield make
    for pod in pods:
        pod.kill()

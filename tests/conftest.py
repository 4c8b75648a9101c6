"""Shared test helpers: run the real CLI in a subprocess with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.redact import forget_secrets

REPO = Path(__file__).resolve().parent.parent

#: Variables Phoenix reads; stripped from the environment of every CLI run in the tests.
_PHOENIX_VARS = {
    "DEBUG_MODE",
    "HUGGINGFACE_TOKEN",
    "HF_TOKEN",
    "CIVITAI_TOKEN",
    "HF_REPOS_TO_DOWNLOAD",
    "CIVITAI_CHECKPOINTS_TO_DOWNLOAD",
    "CIVITAI_LORAS_TO_DOWNLOAD",
    "CIVITAI_VAES_TO_DOWNLOAD",
    "EXTRA_PYTHON_PACKAGES",
    "FB_USERNAME",
    "FB_PASSWORD",
    "USE_VOLUME",
    "PARANOID_MODE",
    "COMFY_CUSTOM_NODE_GIT_URLS",
    "PHOENIX_MANIFEST",
    "PHOENIX_ROOT",
    "CIVITAI_API_BASE",
    "HF_ENDPOINT",
    "NO_COLOR",
}


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without Phoenix's variables, plus ``extra``.

    ``PYTHONPATH`` points at this checkout so a child process runs the code under test, not
    whichever checkout was last installed in editable mode.
    """
    env = {k: v for k, v in os.environ.items() if k not in _PHOENIX_VARS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_phoenix(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m provisioner ARGS`` for real and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *args],
        env=env if env is not None else clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    forget_secrets()

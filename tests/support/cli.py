"""Run the real CLI in a subprocess with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from provisioner.manifest.envmap import ENV_VARS
from tests.support.paths import REPO

#: Variables Phoenix reads (the env table) and NO_COLOR; stripped from every CLI run's env.
_PHOENIX_VARS = {v.name for v in ENV_VARS} | {"NO_COLOR"}


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

"""Exit codes of the command line itself: 0 ok, 1 user error (usage included), 3 bug."""

from __future__ import annotations

import pytest

from tests.conftest import clean_env, run_phoenix


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "--detailed-exitcode", "--fromat", "json"),
        ("bogus",),
        (),
        ("plan", "--format", "yaml"),
        ("apply", "--jobs", "many"),
    ],
)
def test_usage_errors_exit_1_not_2(args: tuple[str, ...]) -> None:
    result = run_phoenix(*args, env=clean_env())
    assert result.returncode == 1, result.stderr
    assert "usage:" in result.stderr and "Traceback" not in result.stderr


def test_version_and_help_exit_0() -> None:
    assert run_phoenix("--version", env=clean_env()).returncode == 0
    assert run_phoenix("plan", "--help", env=clean_env()).returncode == 0
    help_all = run_phoenix("--help", env=clean_env())
    assert help_all.returncode == 0 and "import-snapshot" in help_all.stdout

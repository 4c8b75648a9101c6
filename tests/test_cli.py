"""Exit codes of the command line itself: 0 ok, 1 user error (usage included), 3 bug."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import clean_env, run_phoenix


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


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("apply", "--jobs", "many"), "expected a whole number from 1 to 64, found 'many'"),
        (("lock", "--jobs", "-3"), "expected a whole number from 1 to 64, found '-3'"),
        (("apply", "--jobs", "100000000"), "found '100000000'"),
        (("run", "--health-port", "99999"), "expected a port from 1 to 65535, found '99999'"),
        (("run", "--grace", "-1"), "expected a positive number of seconds, found '-1'"),
        (("cleanup", "--deadline", "inf"), "expected a positive number of seconds, found 'inf'"),
    ],
)
def test_argument_errors_say_what_was_expected(args: tuple[str, ...], expected: str) -> None:
    result = run_phoenix(*args, env=clean_env())
    assert result.returncode == 1 and expected in result.stderr, result.stderr


def test_version_and_help_exit_0() -> None:
    assert run_phoenix("--version", env=clean_env()).returncode == 0
    assert run_phoenix("plan", "--help", env=clean_env()).returncode == 0
    help_all = run_phoenix("--help", env=clean_env())
    assert help_all.returncode == 0 and "import-snapshot" in help_all.stdout


def test_paths_the_system_refuses_are_user_errors_naming_the_path(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    cases = [
        (("export-snapshot", "--root", str(tmp_path / "ws"), "-o", str(tmp_path)), str(tmp_path)),
        (("schema", "--write", str(afile)), str(afile)),
        (("template", "--write", str(afile / "t.json")), str(afile)),
        (("plan", "--root", str(afile / "ws")), str(afile)),
        (("plan", "--root", str(tmp_path / ("a" * 300))), "a" * 255),
    ]
    for args, where in cases:
        result = run_phoenix(*args, env=clean_env(HF_REPOS_TO_DOWNLOAD=""))
        assert result.returncode == 1, (args, result.stderr)
        err = result.stderr
        assert "Traceback" not in err and "internal error" not in err, (args, err)
        assert where in err and "hint:" in err, (args, err)


def test_debug_mode_shows_where_an_os_error_came_from(tmp_path: Path) -> None:
    args = ("plan", "--root", str(tmp_path / ("a" * 300)))  # past NAME_MAX: a raw OSError
    plain = run_phoenix(*args, env=clean_env(HF_REPOS_TO_DOWNLOAD=""))
    debug = run_phoenix(*args, env=clean_env(HF_REPOS_TO_DOWNLOAD="", DEBUG_MODE="true"))
    assert plain.returncode == debug.returncode == 1
    assert "Traceback" not in plain.stderr and "Traceback" in debug.stderr

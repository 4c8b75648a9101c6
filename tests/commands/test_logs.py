"""The one logging setup (provisioner.commands.logs) and the CLI's DEBUG_MODE reading."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from provisioner import cli
from provisioner.commands.logs import debug_enabled, setup_logging
from provisioner.core.redact import RedactingFilter, forget_secrets, register_secret


@pytest.fixture
def phoenix_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("phoenix")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved
    forget_secrets()


def test_one_redacting_handler_one_format(
    phoenix_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(debug=False)
    logger = setup_logging(debug=False)  # a second call replaces, never duplicates
    assert logger is phoenix_logger
    assert len(logger.handlers) == 1
    assert all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in logger.handlers)
    register_secret("hf_secret_in_a_log_line")
    logging.getLogger("phoenix.apply").info("fetching with %s", "hf_secret_in_a_log_line")
    logging.getLogger("phoenix.apply").debug("hidden at INFO")
    err = capsys.readouterr().err
    assert err == "phoenix: INFO phoenix.apply: fetching with ***\n"
    setup_logging(debug=True)
    logging.getLogger("phoenix.run").debug("shown in debug")
    assert capsys.readouterr().err == "phoenix: DEBUG phoenix.run: shown in debug\n"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("on", True), ("1", True), ("YES", True), ("true", True), ("off", False), ("", False),
     ("verbose", False), (None, False)],
)  # fmt: skip
def test_debug_mode_spellings(value: str | None, expected: bool) -> None:
    assert debug_enabled({} if value is None else {"DEBUG_MODE": value}) is expected


def test_internal_error_traceback_only_in_debug_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug in a command: exit 3, one line; the traceback only with DEBUG_MODE=on."""
    from provisioner.commands import env as env_command

    def broken(args: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(env_command, "run", broken)
    monkeypatch.delenv("DEBUG_MODE", raising=False)
    assert cli.main(["env"]) == cli.EXIT_BUG
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: boom" in err and "Traceback" not in err
    monkeypatch.setenv("DEBUG_MODE", "on")
    assert cli.main(["env"]) == cli.EXIT_BUG
    assert "Traceback" in capsys.readouterr().err

"""Phoenix's one logging setup: stderr (the container log), one format, secrets masked."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping

from provisioner.core.redact import RedactingFilter
from provisioner.manifest.envmap import flag_or_none

LOGGER = "phoenix"
FORMAT = "phoenix: %(levelname)s %(name)s: %(message)s"


class _PhoenixHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`setup_logging` installs (recognised so a second call replaces it)."""


def setup_logging(debug: bool = False) -> logging.Logger:
    """Send the ``phoenix`` logger to stderr through the redactor; return that logger.

    Idempotent: a second call replaces Phoenix's handler (and sets the level) rather than
    adding another. Every handler on the logger gets a :class:`RedactingFilter`.
    """
    logger = logging.getLogger(LOGGER)
    handler = _PhoenixHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, _PhoenixHandler)]
    logger.addHandler(handler)
    for each in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in each.filters):
            each.addFilter(RedactingFilter())
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
    return logger


def debug_enabled(environ: Mapping[str, str]) -> bool:
    """``DEBUG_MODE`` read leniently (any spelling ``parse_bool`` accepts; invalid → off)."""
    return bool(flag_or_none(environ.get("DEBUG_MODE")))

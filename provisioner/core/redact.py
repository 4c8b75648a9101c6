"""Secret values known to this process, and the one function that scrubs them from text.

Secrets are registered once when read (tokens, passwords) and every printer — the CLI's error
handler, log handlers, plan renderers — passes its text through :func:`redact`.
"""

from __future__ import annotations

import logging

MASK = "***"
_MIN_SECRET_LEN = 4
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that :func:`redact` masks it everywhere from now on."""
    if value and len(value) >= _MIN_SECRET_LEN:
        _secrets.add(value)


def forget_secrets() -> None:
    """Drop every registered value (tests; end of a run)."""
    _secrets.clear()


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***`` (longest first)."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks registered secrets in every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True

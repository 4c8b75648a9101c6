"""Argument types shared by the subcommands: each says what it expected and what it found."""

from __future__ import annotations

import argparse
import math

#: more parallel transfers or lookups than this only queue on the servers (and on memory)
MAX_JOBS = 64


def count(text: str) -> int:
    """A whole number from 1 to :data:`MAX_JOBS` (``--jobs``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_JOBS:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_JOBS}, found {text!r}"
        )
    return value


def port(text: str) -> int:
    """A TCP port, 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, found {text!r}")
    return value


def seconds(text: str) -> float:
    """A positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, found {text!r}")
    return value

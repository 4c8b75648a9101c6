"""Where things are: the checkout under test and the data files the tests share."""

from __future__ import annotations

from pathlib import Path

#: The checkout under test.
REPO = Path(__file__).resolve().parents[2]
#: Data the tests share: stand-in programs, Manager snapshots, ComfyUI flag lists.
FIXTURES = REPO / "tests" / "fixtures"

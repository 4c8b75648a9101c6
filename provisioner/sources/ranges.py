"""The resume map of a segmented ``.part``, and the pure range bookkeeping behind it.

A segmented transfer (:mod:`provisioner.sources.segments`) records the byte ranges it finished
in a sidecar map, ``<part>.segments.json``, written atomically
(:func:`provisioner.core.fsio.atomic_write_json`), so a kill leaves the old map or the new one.
A later run checks the map against the server's size and validator and fetches only the
missing ranges. Ranges are half-open ``(start, end)`` tuples; nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.core.fsio import atomic_write_json

Range = tuple[int, int]  # half-open [start, end)


def merge_ranges(ranges: list[Range]) -> list[Range]:
    """Sorted, non-overlapping, non-adjacent ranges covering the same bytes."""
    merged: list[Range] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def missing_ranges(done: list[Range], total: int) -> list[Range]:
    """The gaps of ``done`` in ``[0, total)``."""
    gaps, at = [], 0
    for start, end in merge_ranges(done):
        if start > at:
            gaps.append((at, start))
        at = max(at, end)
    if at < total:
        gaps.append((at, total))
    return gaps


def split_pieces(ranges: list[Range], size: int) -> list[Range]:
    """``ranges`` cut into pieces of at most ``size`` bytes, in file order."""
    return [(at, min(end, at + size)) for start, end in ranges for at in range(start, end, size)]


def done_prefix(done: list[Range]) -> int:
    """How many bytes from offset 0 are finished without a gap."""
    merged = merge_ranges(done)
    return merged[0][1] if merged and merged[0][0] == 0 else 0


@dataclass
class SegmentMap:
    """The resume map of a segmented ``.part``: what was asked for and what is finished."""

    url: str
    total: int
    validator: str | None
    done: list[Range] = field(default_factory=list)

    @staticmethod
    def path_for(part: Path) -> Path:
        """Where the map of ``part`` lives."""
        return part.with_name(part.name + ".segments.json")

    @classmethod
    def load(cls, part: Path) -> SegmentMap | None:
        """The map beside ``part``, or None when absent or unreadable."""
        try:
            raw = json.loads(cls.path_for(part).read_text(encoding="utf-8"))
            done = [(int(a), int(b)) for a, b in raw["done"]]
            validator = raw["validator"]
            return cls(
                str(raw["url"]),
                int(raw["total"]),
                validator if isinstance(validator, str) else None,
                merge_ranges(done),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, part: Path) -> None:
        """Write the map atomically (a kill leaves the old map or the new one)."""
        atomic_write_json(
            self.path_for(part),
            {
                "url": self.url,
                "total": self.total,
                "validator": self.validator,
                "done": [list(r) for r in merge_ranges(self.done)],
            },
        )

    @classmethod
    def drop(cls, part: Path) -> None:
        """Remove the map of ``part`` if there is one."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(cls.path_for(part))

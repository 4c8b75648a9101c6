"""Byte counts for people, in decimal units (kB, MB, GB, TB).

Decimal, as disk sizes are sold and as RunPod sizes a pod's disk ("150 GB"), so the plan's
sizes, the free-space checks and the download progress all speak the same units.
"""

from __future__ import annotations

KB, MB, GB, TB = 1000, 1000**2, 1000**3, 1000**4


def human_bytes(n: float) -> str:
    """``512`` → ``512 B``; ``1_536`` → ``1.5 kB``; ``23_802_932_552`` → ``23.8 GB``."""
    for unit, factor in (("TB", TB), ("GB", GB), ("MB", MB), ("kB", KB)):
        if abs(n) >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n:.0f} B"

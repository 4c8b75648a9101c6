"""Byte counts in one convention everywhere: decimal units, as disks and RunPod size them."""

from __future__ import annotations

import pytest

from provisioner.core.units import GB, TB, human_bytes


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1_000, "1.0 kB"),
        (1_536, "1.5 kB"),
        (23_802_932_552, "23.8 GB"),  # flux1-dev.safetensors
        (150 * GB, "150.0 GB"),
        (3 * TB, "3.0 TB"),
        (2.5e6, "2.5 MB"),  # rates are floats
    ],
)
def test_human_bytes(n: float, text: str) -> None:
    assert human_bytes(n) == text


def test_plan_sizes_and_progress_use_the_one_helper() -> None:
    from provisioner.plan import render
    from provisioner.sources import progress

    assert render.human_size(None) == "size unknown"
    assert render.human_size(150 * GB) == human_bytes(150 * GB)
    assert progress.human_bytes is human_bytes

"""``downloads.connections`` and ``PHOENIX_DOWNLOAD_CONNECTIONS`` reach the download engine.

A real ``python -m provisioner apply`` fetches one URL model just over the real segmenting
threshold (:data:`~provisioner.sources.segments.MIN_SEGMENTED_SIZE`, 64 MiB) from the loopback
server, which records every request and how many it answered at once: one connection is one
plain GET, more are a probe and then ranged requests over that many connections at once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.sources.ranges import merge_ranges
from provisioner.sources.segments import MIN_SEGMENTED_SIZE, PIECE_SIZE
from tests.support.civitai import LoopbackHub, Served, running_hub
from tests.support.cli import clean_env, run_phoenix
from tests.support.desired import with_comfyui
from tests.support.safetensors import safetensors_bytes

MiB = 1024 * 1024
#: Per connection: each 16 MiB piece takes a quarter second, so the connections overlap.
RATE = 64 * MiB


@pytest.fixture(scope="module")
def big() -> bytes:
    """A valid safetensors VAE of just over 64 MiB (one F16 tensor of 32 Mi elements)."""
    data = safetensors_bytes({"decoder.conv_in.weight": MIN_SEGMENTED_SIZE // 2})
    assert MIN_SEGMENTED_SIZE < len(data) < MIN_SEGMENTED_SIZE + MiB
    return data


@pytest.fixture
def hub() -> Iterator[LoopbackHub]:
    yield from running_hub()


def _ranges(hub: LoopbackHub) -> list[str | None]:
    return [r.headers.get("Range") for r in hub.requests_to("/files/")]


@pytest.mark.parametrize(
    ("in_manifest", "in_env", "connections"),
    [
        (1, None, 1),
        (3, None, 3),
        (3, "1", 1),  # the environment overrides the manifest, both ways
        (1, "3", 3),
    ],
)
def test_connections_reach_the_engine_through_apply(
    hub: LoopbackHub,
    big: bytes,
    tmp_path: Path,
    in_manifest: int,
    in_env: str | None,
    connections: int,
) -> None:
    url = hub.serve("big.safetensors", Served(data=big, rate=RATE))
    sha = hashlib.sha256(big).hexdigest()
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        with_comfyui(
            f"version: 1\ndownloads:\n  connections: {in_manifest}\n"
            f"models:\n  - url: {url}\n    sha256: {sha}\n    type: vae\n"
        )
    )
    root = tmp_path / "root"
    env = clean_env(**({"PHOENIX_DOWNLOAD_CONNECTIONS": in_env} if in_env else {}))

    done = run_phoenix("apply", "--manifest", str(manifest), "--root", str(root), env=env)

    assert done.returncode == 0, done.stdout + done.stderr
    placed = root / "models/vae/big.safetensors"
    assert hashlib.sha256(placed.read_bytes()).hexdigest() == sha
    records = hub.requests_to("/files/")
    if connections == 1:
        assert [(r.method, r.status, r.headers.get("Range")) for r in records] == [
            ("GET", 200, None)
        ]
        assert hub.bytes_sent() == len(big)
        assert hub.peak_in_flight == 1
        return
    assert _ranges(hub)[0] == "bytes=0-0"  # the probe
    asked = []
    for record in records[1:]:
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", record.headers.get("Range", ""))
        assert match and record.status == 206, record
        asked.append((int(match.group(1)), int(match.group(2)) + 1))
    assert len(asked) == -(-len(big) // PIECE_SIZE)  # one request per piece
    assert merge_ranges(asked) == [(0, len(big))]
    assert sum(b - a for a, b in asked) == len(big)  # no byte asked twice
    assert 2 <= hub.peak_in_flight <= connections

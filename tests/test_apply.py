"""The apply orchestrator: volume lock, kinds in order, re-observation after applying."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.apply import apply_all
from provisioner.core.config import load_versions
from provisioner.core.layout import Layout
from provisioner.plan.kinds import KIND_MODULES
from tests.support.civitai import LoopbackHub, Served, running_hub
from tests.support.desired import desired_from
from tests.support.safetensors import VAE_KEYS, safetensors_bytes

HOLD = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from provisioner.core.layout import Layout\n"
    "from provisioner.state.volume_lock import volume_lock\n"
    "with volume_lock(Layout(Path(sys.argv[1]))):\n"
    "    Path(sys.argv[2]).write_text('held')\n"
    "    while not Path(sys.argv[3]).exists():\n"
    "        time.sleep(0.05)\n"
)


@pytest.fixture
def files() -> Iterator[LoopbackHub]:
    yield from running_hub()


def _manifest(files: LoopbackHub, good: bytes, bad_sha: str) -> str:
    url_ok = files.serve("vae-good.safetensors", Served(data=good))
    url_bad = files.serve("vae-bad.safetensors", Served(data=b"not what the manifest says"))
    return (
        "models:\n"
        f"  - url: {url_ok}\n    sha256: {hashlib.sha256(good).hexdigest()}\n"
        f"  - url: {url_bad}\n    sha256: {bad_sha}\n    type: vae\n"
    )


def test_apply_waits_for_the_volume_lock_then_applies_kinds_in_order(
    files: LoopbackHub, tmp_path: Path
) -> None:
    good = safetensors_bytes(VAE_KEYS)
    desired, secrets, _ = desired_from(tmp_path, _manifest(files, good, "f" * 64))
    root = tmp_path / "root"
    ready, release = tmp_path / "ready", tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(root), str(ready), str(release)])
    try:
        while not ready.exists():
            assert holder.poll() is None
            time.sleep(0.05)
        waits: list[str] = []

        def on_wait(message: str) -> None:
            waits.append(message)
            release.write_text("go")

        report = apply_all(desired, Layout(root), load_versions(), secrets, on_wait=on_wait)
    finally:
        release.write_text("go")
        holder.wait(10)
    assert len(waits) == 1, waits
    assert waits[0].startswith(
        f"waiting for another phoenix apply on this volume (pid {holder.pid} on host "
    ), waits

    kinds = [r.kind for r in report.results]
    order = [m.rsplit(".", 1)[-1].rstrip("s") for m in KIND_MODULES]
    assert kinds == sorted(kinds, key=lambda k: order.index(k) if k in order else len(order))
    assert (root / "models/vae/vae-good.safetensors").read_bytes() == good
    # the failure is reported, stays pending; the success does not
    assert [r.id for r in report.failed] == [f"url:{files.cdn_base}/files/vae-bad.safetensors"]
    assert [c.id for c in report.remaining] == [r.id for r in report.failed]
    assert not report.ok

"""The engine in real child processes: ``kill -9`` mid-transfer, and ENOSPC on a tiny tmpfs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import provisioner
from provisioner.sources.download import staging_name
from tests.support.civitai import LoopbackHub, Served
from tests.support.downloads import blob, sha

MiB = 1024 * 1024
PACKAGE_ROOT = Path(provisioner.__file__).resolve().parents[1]

CHILD = """
import json, sys
from pathlib import Path
from provisioner.core.errors import PhoenixError
from provisioner.sources.download import download
from provisioner.sources.http import make_session

url, dest, staging, expected = sys.argv[1:5]
try:
    result = download(url, Path(dest), staging=Path(staging), expected_sha256=expected,
                      session=make_session(), label="child")
except PhoenixError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": exc.message,
                      "staging": sorted(p.name for p in Path(staging).iterdir()),
                      "dest_exists": Path(dest).exists()}))
    sys.exit(1)
print(json.dumps({"sha256": result.sha256, "transferred": result.bytes_transferred}))
"""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), env.get("PYTHONPATH", "")])
    return env


def test_kill_9_mid_download_then_rerun_completes_without_a_partial_in_place(
    hub: LoopbackHub, root: Path, staging: Path
) -> None:
    data = blob(12 * MiB, 21)  # three 4 MiB blocks of the engine
    served = Served(data=data, rate=6 * MiB)
    url = hub.serve("k.safetensors", served)
    dest = root / "models" / "loras" / "k.safetensors"
    part = staging / staging_name(url, sha(data))
    argv = [sys.executable, "-c", CHILD, url, str(dest), str(staging), sha(data)]

    child = subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert not dest.exists(), "a partial file appeared where ComfyUI looks"
        if part.exists() and part.stat().st_size >= 4 * MiB:
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert not dest.exists()
    kept = part.stat().st_size
    assert 4 * MiB <= kept < len(data)

    while not hub.requests_to("/files/") and time.monotonic() < deadline:
        time.sleep(0.01)  # the server notices the dead peer and logs the first request
    served.rate = None
    hub.reset()
    rerun = subprocess.run(argv, env=child_env(), capture_output=True, timeout=60, check=False)

    assert rerun.returncode == 0, rerun.stderr.decode()
    report = json.loads(rerun.stdout)
    assert report == {"sha256": sha(data), "transferred": len(data) - kept}
    assert hub.bytes_sent() == len(data) - kept
    assert dest.read_bytes() == data
    assert sorted(p.name for p in staging.iterdir()) == []


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs user+mount namespaces (unshare -rm)")
def test_enospc_mid_stream_is_a_disk_space_error_and_removes_the_part(
    hub: LoopbackHub, tmp_path: Path
) -> None:
    data = blob(3 * MiB, 22)
    url = hub.serve("big.bin", Served(data=data, chunked=True))  # size unknown up front
    small = tmp_path / "small"
    small.mkdir()
    script = (
        f"mount -t tmpfs -o size=1m tmpfs {small} && mkdir {small}/staging && "
        f'exec "$0" -c "$1" "$2" "$3" "$4" "$5"'
    )
    argv = [
        "unshare",
        "-rm",
        "sh",
        "-c",
        script,
        sys.executable,
        CHILD,
        url,
        f"{small}/models/big.bin",
        f"{small}/staging",
        sha(data),
    ]

    done = subprocess.run(argv, env=child_env(), capture_output=True, timeout=60, check=False)

    assert done.returncode == 1, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["error"] == "DiskSpaceError"
    assert "disk full while downloading child" in report["message"]
    assert report["staging"] == [] and report["dest_exists"] is False


SEGMENTED_CHILD = """
import json, sys
from pathlib import Path
from provisioner.sources import download as engine, segments
from provisioner.sources.http import make_session

segments.PIECE_SIZE = 1024 * 1024  # a few-MiB file in several pieces
engine.MIN_SEGMENTED_SIZE = 4 * 1024 * 1024
url, dest, staging, expected = sys.argv[1:5]
result = engine.download(url, Path(dest), staging=Path(staging), expected_sha256=expected,
                         session=make_session(), label="child", connections=4)
print(json.dumps({"sha256": result.sha256, "transferred": result.bytes_transferred}))
"""


def test_kill_9_mid_segmented_download_then_rerun_fetches_only_missing_ranges(
    hub: LoopbackHub, root: Path, staging: Path
) -> None:
    from provisioner.sources.ranges import SegmentMap, missing_ranges

    data = blob(16 * MiB + 5, 23)
    served = Served(data=data, rate=2 * MiB)  # per connection: 4 connections, about 2 s
    url = hub.serve("s.safetensors", served)
    dest = root / "models" / "checkpoints" / "s.safetensors"
    part = staging / staging_name(url, sha(data))
    argv = [sys.executable, "-c", SEGMENTED_CHILD, url, str(dest), str(staging), sha(data)]

    child = subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        kept = SegmentMap.load(part)
        if kept is not None and sum(b - a for a, b in kept.done) >= 4 * MiB:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert not dest.exists()
    kept = SegmentMap.load(part)  # the last map the child wrote before it died
    assert kept is not None and part.stat().st_size == len(data)  # pre-allocated
    kept_bytes = sum(b - a for a, b in kept.done)
    assert 4 * MiB <= kept_bytes < len(data)

    served.rate = None
    hub.reset()
    rerun = subprocess.run(argv, env=child_env(), capture_output=True, timeout=60, check=False)

    assert rerun.returncode == 0, rerun.stderr.decode()
    assert json.loads(rerun.stdout) == {"sha256": sha(data), "transferred": len(data) - kept_bytes}
    assert hub.bytes_sent() == len(data) - kept_bytes + 1  # + the probe's byte
    asked = sum(
        int(r.headers["Range"].split("-")[1]) + 1 - int(r.headers["Range"][6:].split("-")[0])
        for r in hub.requests_to("/files/")[1:]
    )
    assert asked == sum(b - a for a, b in missing_ranges(kept.done, len(data)))
    assert dest.read_bytes() == data
    assert sorted(p.name for p in staging.iterdir()) == []

"""Benchmark: N pods on one shared volume vs one pod, against a loopback server that counts.

N real ``phoenix apply`` processes start at once on one root (the shared volume) and fetch the
same manifest; the volume lock (provisioner/state/volume_lock.py) lets one of them download
while the others wait, then re-check and fetch nothing. Printed side by side for N=1 and N=N:
GET requests, body bytes sent by the server, wall time until the last pod exits, and the
ratio of bytes to the one-pod run (1.00 = each file fetched once).

    python benchmarks/bench_shared_volume.py [--pods 4] [--files 4] [--size-mib 16] [--rate-mib 8]

The rate is per connection (the loopback server throttles each one), so the download takes a
measurable time, as over a real network. Everything lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.civitai import LoopbackHub, Served  # noqa: E402
from tests.support.cli import clean_env  # noqa: E402
from tests.support.desired import with_comfyui  # noqa: E402
from tests.support.downloads import blob, sha  # noqa: E402

MiB = 1024 * 1024


@dataclass(frozen=True)
class Result:
    pods: int
    gets: int
    body_bytes: int
    wall_s: float
    exit_codes: tuple[int, ...]


def write_manifest(hub: LoopbackHub, where: Path, files: int, size: int, rate: int) -> Path:
    """A manifest of ``files`` LoRAs of ``size`` bytes each, served at ``rate`` B/s."""
    lines = ["version: 1", "models:"]
    for i in range(files):
        data = blob(size, 100 + i)
        url = hub.serve(f"shared{i}.bin", Served(data=data, rate=rate))
        lines += [f"  - url: {url}", f"    sha256: {sha(data)}", "    type: loras"]
    manifest = where / "pods.yaml"
    manifest.write_text(with_comfyui("\n".join(lines) + "\n"))
    return manifest


def run_pods(hub: LoopbackHub, manifest: Path, root: Path, pods: int) -> Result:
    """Start ``pods`` applies at once on ``root``; count what the server sent them."""
    hub.reset()
    env = clean_env(PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "provisioner", "apply", "--manifest", str(manifest)]
    began = time.monotonic()
    procs = [
        subprocess.Popen(
            [*command, "--root", str(root)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(pods)
    ]
    codes = tuple(p.wait(timeout=600) for p in procs)
    wall = time.monotonic() - began
    gets = [r for r in hub.requests_to("/files/") if r.method == "GET"]
    return Result(pods, len(gets), sum(r.body_bytes for r in gets), wall, codes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=4)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--rate-mib", type=float, default=8.0, help="per connection, MiB/s")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="phoenix-bench-shared-") as tmp:
        base = Path(tmp)
        hub = LoopbackHub()
        try:
            manifest = write_manifest(
                hub, base, args.files, args.size_mib * MiB, int(args.rate_mib * MiB)
            )
            results = [run_pods(hub, manifest, base / f"root{n}", n) for n in (1, args.pods)]
        finally:
            hub.close()
    total = args.files * args.size_mib * MiB
    print(
        f"{args.files} files x {args.size_mib} MiB ({total / MiB:.0f} MiB), "
        f"{args.rate_mib:g} MiB/s per connection, one fresh root per row"
    )
    print(f"{'pods':>5} {'GETs':>5} {'MiB sent':>9} {'bytes/1 pod':>12} {'wall s':>7}  exit codes")
    one = results[0].body_bytes or 1
    for r in results:
        print(
            f"{r.pods:>5} {r.gets:>5} {r.body_bytes / MiB:>9.1f} {r.body_bytes / one:>12.2f} "
            f"{r.wall_s:>7.2f}  {','.join(map(str, r.exit_codes))}"
        )
    return 0 if all(c == 0 for r in results for c in r.exit_codes) else 1


if __name__ == "__main__":
    sys.exit(main())

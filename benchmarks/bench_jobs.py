"""Benchmark (c): 8 files from a server that limits each connection's rate.

``download_all`` with ``jobs=1`` against ``jobs=4`` (and 8): the target is jobs=4 taking at
most 30 % of jobs=1's time. Every file is verified (SHA256) and placed as in a real run.

    python benchmarks/bench_jobs.py [--files 8] [--mib 16] [--rate-mib 8] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import emit  # noqa: E402
from provisioner.sources.download import DownloadTask, download_all  # noqa: E402
from provisioner.sources.http import make_session  # noqa: E402
from tests.support.civitai import LoopbackHub, Served  # noqa: E402

MiB = 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--mib", type=int, default=16, help="size of each file")
    parser.add_argument("--rate-mib", type=float, default=8.0, help="per-connection limit")
    parser.add_argument("--markdown", type=Path, help="append a results table to this file")
    args = parser.parse_args()
    hub = LoopbackHub()
    work = Path(tempfile.mkdtemp(prefix="phoenix-bench-jobs-", dir="/tmp"))
    session = make_session()
    try:
        files = []
        for i in range(args.files):
            data = os.urandom(args.mib * MiB)
            url = hub.serve(f"f{i}.safetensors", Served(data=data, rate=int(args.rate_mib * MiB)))
            files.append((url, f"f{i}.safetensors", hashlib.sha256(data).hexdigest()))
        timings: dict[int, float] = {}
        for jobs in (1, 4, 8):
            root = work / f"jobs{jobs}"
            tasks = [
                DownloadTask(
                    url,
                    root / "models" / "loras" / name,
                    root / "staging",
                    digest,
                    session,
                    label=name,
                )
                for url, name, digest in files
            ]
            began = time.perf_counter()
            outcomes = download_all(tasks, jobs)
            timings[jobs] = time.perf_counter() - began
            failed = [o.error for o in outcomes if o.error is not None]
            assert not failed, failed
            shutil.rmtree(root)
    finally:
        hub.close()
        shutil.rmtree(work, ignore_errors=True)

    serial = timings[1]
    lines = [
        f"Benchmark (c): {args.files} files × {args.mib} MiB, server limit "
        f"{args.rate_mib:g} MiB/s per connection, verified and placed",
        "",
        "| jobs | seconds | % of jobs=1 |",
        "|---:|---:|---:|",
        *[f"| {j} | {t:.2f} | {100 * t / serial:.0f}% |" for j, t in timings.items()],
        "",
        f"jobs=4 takes {100 * timings[4] / serial:.0f}% of jobs=1 (target ≤ 30%).",
    ]
    emit(lines, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

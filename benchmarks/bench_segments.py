"""Benchmark (a) of issue 15: one large file from a server that limits each connection's rate.

Phoenix segmented (``connections=8``) against Phoenix on one stream and against
``aria2c -x8 -s8`` (Debian's aria2, the anchor), all in one run, from the tests' loopback server
(``tests/support/civitai.py``, ``sendfile`` paced per connection). Every method verifies the
SHA256 (aria2c with ``--checksum``, a pass after its transfer); Phoenix also fsyncs and places
the file atomically, aria2c does not fsync. Also measured: what a second hashing pass over the
finished file would cost (hashlib over the warm file), against hashing in order during the
transfer, which is what Phoenix does.

    python benchmarks/bench_segments.py [--size-gib 2] [--rate-mib 25] [--markdown FILE]

The test file is random bytes in /tmp and is removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_download import make_file  # noqa: E402
from benchmarks.report import emit  # noqa: E402
from provisioner.sources.download import download  # noqa: E402
from provisioner.sources.http import make_session  # noqa: E402
from tests.support.civitai import LoopbackHub, Served  # noqa: E402

MiB = 1024 * 1024


def timed(run: object) -> float:
    assert callable(run)
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--rate-mib", type=float, default=25.0, help="per connection, MiB/s")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--markdown", type=Path, help="append a results table to this file")
    args = parser.parse_args()
    size = int(args.size_gib * 1024 * MiB)
    conns = args.connections
    work = Path(tempfile.mkdtemp(prefix="phoenix-bench-", dir="/tmp"))
    hub = LoopbackHub()
    load_before = os.getloadavg()
    try:
        source = work / "source.bin"
        print(f"generating {size / MiB:.0f} MiB of random bytes in {work} ...", flush=True)
        expected = make_file(source, size)
        url = hub.serve("big.safetensors", Served(path=source, rate=int(args.rate_mib * MiB)))
        root = work / "root"
        staging = root / ".phoenix" / "staging"
        dest = root / "models" / "checkpoints" / "big.safetensors"
        session = make_session()

        def clean() -> None:
            shutil.rmtree(root, ignore_errors=True)

        def phoenix(connections: int) -> float:
            clean()
            began = time.perf_counter()
            result = download(
                url,
                dest,
                staging=staging,
                expected_sha256=expected,
                session=session,
                connections=connections,
                label="bench",
            )
            took = time.perf_counter() - began
            assert result.sha256 == expected
            return took

        def aria2c() -> float:
            clean()
            out = root / "aria2"
            out.mkdir(parents=True)
            began = time.perf_counter()
            subprocess.run(
                [
                    "aria2c",
                    f"-x{conns}",
                    f"-s{conns}",
                    f"--checksum=sha-256={expected}",
                    "--console-log-level=warn",
                    "--summary-interval=0",
                    "--show-console-readout=false",
                    "--download-result=hide",
                    "-d",
                    str(out),
                    "-o",
                    "big.safetensors",
                    url,
                ],
                check=True,
            )
            return time.perf_counter() - began

        def second_pass() -> float:
            def run() -> None:
                digest = hashlib.sha256()
                with open(source, "rb") as fh:
                    while block := fh.read(4 * MiB):
                        digest.update(block)
                assert digest.hexdigest() == expected

            return timed(run)

        t_seg = phoenix(conns)
        t_aria = aria2c()
        t_pass = second_pass()
        t_one = phoenix(1)
        clean()
    finally:
        hub.close()
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    mb = size / MiB
    rows = [
        (f"Phoenix, {conns} connections (verify + fsync + place)", t_seg),
        ("Phoenix, one stream (verify + fsync + place)", t_one),
        (f"aria2c -x{conns} -s{conns} --checksum=sha-256 (anchor; no fsync)", t_aria),
        ("(reference) a second SHA256 pass over the file (hashlib, warm cache)", t_pass),
    ]
    lines = [
        f"Benchmark (a): {mb:.0f} MiB, loopback server limited to {args.rate_mib:g} MiB/s per "
        f"connection, {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before / "
        f"{load_after[0]:.2f} after",
        "",
        "| method | seconds | MiB/s |",
        "|---|---:|---:|",
        *[f"| {name} | {t:.2f} | {mb / t:.0f} |" for name, t in rows],
        "",
        f"Phoenix {conns} connections = {t_aria / t_seg:.2f}× aria2c's rate (target ≥ 0.8) and "
        f"{t_one / t_seg:.2f}× one stream (target ≥ 4). Hashing in order during the transfer "
        f"instead of a second pass saves up to {t_pass:.2f} s here.",
    ]
    emit(lines, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

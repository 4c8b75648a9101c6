"""Benchmark (b): download + verify a ≥ 2 GiB file from a loopback server.

Phoenix's engine (one pass: read, SHA256 and write overlapped; one stream and 8 connections)
against ``curl -s -o f URL && sha256sum f`` (two passes), and against the limit of this
machine measured in the same run: the lowest of ``curl -o /dev/null``'s rate, Python's
``hashlib.sha256`` rate (what Phoenix hashes with) and ``dd bs=4M conv=fsync`` (the disk's
durable write rate; Phoenix fsyncs before it places a file). Prints the figures side by side.

    python benchmarks/bench_download.py [--size-gib 2] [--repeat 2] [--markdown FILE]

The test file is random bytes in /tmp (not sparse) and is removed at the end.
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
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import emit  # noqa: E402
from provisioner.sources.download import download  # noqa: E402
from provisioner.sources.http import make_session  # noqa: E402
from tests.support.civitai import LoopbackHub, Served  # noqa: E402

MiB = 1024 * 1024


def make_file(path: Path, size: int) -> str:
    """Random bytes (64 MiB of urandom repeated with a counter), returning their SHA256."""
    digest = hashlib.sha256()
    seed = os.urandom(64 * MiB)
    with open(path, "wb") as fh:
        written, block = 0, 0
        while written < size:
            chunk = block.to_bytes(8, "little") + seed[8 : min(len(seed), size - written)]
            fh.write(chunk)
            digest.update(chunk)
            written += len(chunk)
            block += 1
    return digest.hexdigest()


def best_of(repeat: int, run: Callable[[], None], cleanup: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        cleanup()
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    cleanup()
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--markdown", type=Path, help="append a results table to this file")
    args = parser.parse_args()
    size = int(args.size_gib * 1024 * MiB)
    work = Path(tempfile.mkdtemp(prefix="phoenix-bench-", dir="/tmp"))
    hub = LoopbackHub()
    load_before = os.getloadavg()[0]
    try:
        source = work / "source.bin"
        print(f"generating {size / MiB:.0f} MiB of random bytes in {work} ...", flush=True)
        expected = make_file(source, size)
        url = hub.serve("big.safetensors", Served(path=source, etag='"big"'))
        out = work / "out.bin"
        dest = work / "root" / "models" / "checkpoints" / "big.safetensors"
        staging = work / "root" / ".phoenix" / "staging"

        def rm_outputs() -> None:
            for p in (out, dest):
                p.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)

        def curl_sha() -> None:
            subprocess.run(["curl", "-sf", "-o", str(out), url], check=True)
            got = subprocess.run(["sha256sum", str(out)], check=True, capture_output=True)
            assert got.stdout.split()[0].decode() == expected

        def curl_null() -> None:
            subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True)

        def sha_only() -> None:
            subprocess.run(["sha256sum", str(source)], check=True, capture_output=True)

        def hashlib_only() -> None:
            digest = hashlib.sha256()
            with open(source, "rb") as fh:
                while block := fh.read(4 * MiB):
                    digest.update(block)
            assert digest.hexdigest() == expected

        session = make_session()

        def phoenix(connections: int = 1) -> None:
            result = download(
                url,
                dest,
                staging=staging,
                expected_sha256=expected,
                session=session,
                label="bench",
                connections=connections,
            )
            assert result.sha256 == expected

        def dd_fsync() -> None:
            subprocess.run(
                [
                    "dd",
                    "if=/dev/zero",
                    f"of={out}",
                    "bs=4M",
                    f"count={size // (4 * MiB)}",
                    "conv=fsync",
                ],
                check=True,
                capture_output=True,
            )

        shm = Path("/dev/shm")
        shm_root = None
        if shm.is_dir() and shutil.disk_usage(shm).free > 2 * size:
            shm_root = Path(tempfile.mkdtemp(prefix="phoenix-bench-", dir=shm))

        def phoenix_shm() -> None:
            assert shm_root is not None
            result = download(
                url,
                shm_root / "models" / "big.safetensors",
                staging=shm_root / "staging",
                expected_sha256=expected,
                session=session,
                label="bench",
            )
            assert result.sha256 == expected

        def rm_shm() -> None:
            if shm_root is not None:
                shutil.rmtree(shm_root / "models", ignore_errors=True)
                shutil.rmtree(shm_root / "staging", ignore_errors=True)

        sha_only()  # warm the page cache for the source file
        t_curl_sha = best_of(args.repeat, curl_sha, rm_outputs)
        t_null = best_of(args.repeat, curl_null, rm_outputs)
        t_sha = best_of(args.repeat, sha_only, rm_outputs)
        t_hashlib = best_of(args.repeat, hashlib_only, rm_outputs)
        t_phoenix = best_of(args.repeat, phoenix, rm_outputs)
        t_seg = best_of(args.repeat, lambda: phoenix(8), rm_outputs)
        t_dd = best_of(args.repeat, dd_fsync, rm_outputs)
        t_shm = best_of(args.repeat, phoenix_shm, rm_shm) if shm_root else None
    finally:
        hub.close()
        shutil.rmtree(work, ignore_errors=True)
        if shm_root is not None:
            shutil.rmtree(shm_root, ignore_errors=True)

    mb = size / MiB
    limit = min(mb / t_null, mb / t_hashlib, mb / t_dd)
    rows = [
        ("curl -o /dev/null (transfer only)", t_null),
        ("hashlib sha256 (hash only, warm cache)", t_hashlib),
        ("dd bs=4M conv=fsync (this disk's durable write rate)", t_dd),
        ("(reference) coreutils sha256sum, warm cache", t_sha),
        ("curl -o f && sha256sum f (baseline)", t_curl_sha),
        ("Phoenix download + verify + fsync + place, one stream", t_phoenix),
        ("Phoenix download + verify + fsync + place, 8 connections", t_seg),
    ]
    if t_shm is not None:
        rows.append(("(reference) Phoenix into /dev/shm: engine without the disk bound", t_shm))
    lines = [
        f"Benchmark (b): {mb:.0f} MiB from a loopback server, best of {args.repeat}, "
        f"{os.cpu_count()} CPUs, load average {load_before:.2f} before / "
        f"{os.getloadavg()[0]:.2f} after",
        "",
        "| method | seconds | MiB/s |",
        "|---|---:|---:|",
        *[f"| {name} | {t:.2f} | {mb / t:.0f} |" for name, t in rows],
        "",
        f"limit = min(curl→/dev/null, hashlib, dd conv=fsync) = {limit:.0f} MiB/s; "
        f"Phoenix one stream = {(mb / t_phoenix) / limit:.2f} of the limit, "
        f"8 connections = {(mb / t_seg) / limit:.2f} (target ≥ 0.8); "
        f"Phoenix vs curl+sha256sum: {t_curl_sha / t_phoenix:.2f}× faster (target > 1).",
    ]
    emit(lines, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

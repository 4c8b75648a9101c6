"""Benchmark: `phoenix plan` wall time vs `python -c pass`, on the default and a 500-item manifest.

Prints median wall times over N runs, side by side, and the overhead over the baseline.
Usage: python benchmarks/bench_plan.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_manifest(path: Path, items: int) -> None:
    """A manifest with ``items`` entries spread over every kind."""
    lines = ["version: 1", "models:"]
    n_models = items * 3 // 5
    for i in range(n_models):
        kind = i % 3
        if kind == 0:
            lines += [
                f"  - hf: org{i}/repo{i}",
                f"    files: [model-{i}.safetensors]",
                "    type: loras",
            ]
        elif kind == 1:
            lines += [f"  - civitai: {100000 + i}@{200000 + i}", "    type: loras"]
        else:
            lines += [
                f"  - url: https://example.com/files/{i}.safetensors",
                f'    sha256: "{i:064x}"',
                "    type: checkpoints",
            ]
    lines.append("nodes:")
    for i in range(items // 5):
        lines += [f"  - url: https://github.com/owner/node-{i}", f"    ref: v1.{i}"]
    lines.append("packages:")
    lines += [f"  - package-{i}>=1.{i},<2" for i in range(items - n_models - items // 5)]
    path.write_text("\n".join(lines) + "\n")


def measure(cmd: list[str], runs: int, env: dict[str, str]) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds of the child) over ``runs`` runs.

    CPU time (user + sys) is reported too because wall time on a shared 2-core machine
    swings with whatever else runs; CPU time does not.
    """
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "CIVITAI", "PHOENIX"))}
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "manifest-500.yaml"
        make_manifest(big, 500)
        root = str(Path(tmp) / "ws")
        phoenix = [sys.executable, "-m", "provisioner", "plan", "--root", root]
        big_args = [*phoenix, "--manifest", str(big)]
        rows = [
            ("python -c pass (baseline)", measure([sys.executable, "-c", "pass"], args.runs, env)),
            ("phoenix plan (embedded default)", measure(phoenix, args.runs, env)),
            ("phoenix plan, 500 items", measure(big_args, args.runs, env)),
            (
                "phoenix plan, 500 items, json",
                measure([*big_args, "--format", "json"], args.runs, env),
            ),
        ]
    base_wall, base_cpu = rows[0][1]
    print(f"runs per command: {args.runs} (medians)")
    print(f"{'command':<34} {'wall s':>7} {'+wall':>7} {'cpu s':>7} {'+cpu':>7}")
    for name, (wall, cpu) in rows:
        print(f"{name:<34} {wall:7.3f} {wall - base_wall:+7.3f} {cpu:7.3f} {cpu - base_cpu:+7.3f}")
    wall, cpu = rows[2][1]
    verdict = "meets" if wall - base_wall <= 0.5 else "misses"
    print(
        f"500-item overhead: {wall - base_wall:.3f} s wall ({verdict} the <= 0.5 s target), "
        f"{cpu - base_cpu:.3f} s CPU"
    )


if __name__ == "__main__":
    main()

"""Benchmark: `phoenix plan` wall time vs `python -c pass`, on the default and a 500-item manifest.

Prints median wall times over N runs, side by side, and the overhead over the baseline.
Usage: python benchmarks/bench_plan.py [--runs 15] [--before DIR] [--source]

Phoenix runs as in the image: its modules compiled ahead (the Dockerfile runs compileall) and
``PYTHONDONTWRITEBYTECODE=1``. Each tree is copied to a temporary folder and compiled there, so
a stray or stale ``__pycache__`` in the checkout cannot change the figures; ``--source`` also
times the modules compiled from source on every start (the image before it compiled them).
A last row times the floor no Phoenix code can go under: importing pydantic and building one
model, plus ruamel.yaml and packaging (the design card's libraries the plan needs).
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: what ``python -m provisioner`` needs from a tree (resources are found beside the package)
TREE_PARTS = ("provisioner", "manifests", "schemas", "config")
FLOOR = (
    "from pydantic import BaseModel\n"
    "class M(BaseModel):\n    x: int\n"
    "import ruamel.yaml, packaging.requirements"
)


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


def measure(
    cmds: list[tuple[list[str], str | None]], runs: int, env: dict[str, str]
) -> list[tuple[float, float]]:
    """(median wall seconds, median CPU seconds of the child) per command over ``runs`` rounds.

    The commands run round-robin, so load from other work on the machine hits all of them
    alike. CPU time (user + sys, children included) is reported too because wall time on a
    shared 2-core machine swings with whatever else runs; CPU time does not.
    """
    walls: list[list[float]] = [[] for _ in cmds]
    cpus: list[list[float]] = [[] for _ in cmds]
    for _ in range(runs):
        for i, (cmd, cwd) in enumerate(cmds):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
            walls[i].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus[i].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(walls, cpus, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="also time the plan commands from DIR (a checkout of an older commit), interleaved",
    )
    parser.add_argument(
        "--source",
        action="store_true",
        help="also time the 500 items with Phoenix compiled from source at every start",
    )
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "CIVITAI", "PHOENIX"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    sources = [("", Path(__file__).resolve().parents[1])]
    if args.before:
        sources.insert(0, ("before: ", Path(args.before)))
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "manifest-500.yaml"
        make_manifest(big, 500)
        root = str(Path(tmp) / "ws")
        phoenix = [sys.executable, "-m", "provisioner", "plan", "--root", root]
        big_args = [*phoenix, "--manifest", str(big)]
        named: list[tuple[str, list[str], str | None]] = [
            ("python -c pass (baseline)", [sys.executable, "-c", "pass"], None)
        ]
        for label, source in sources:
            compiled = copy_tree(source, Path(tmp) / f"tree{len(named)}", compiled=True)
            if args.source:
                plain = copy_tree(source, Path(tmp) / f"tree{len(named)}-src", compiled=False)
                named.append((f"{label}500 items, compiled at start", big_args, plain))
            named += [
                (f"{label}phoenix plan (embedded default)", phoenix, compiled),
                (
                    f"{label}phoenix plan, 500 items, json",
                    [*big_args, "--format", "json"],
                    compiled,
                ),
                (f"{label}phoenix plan, 500 items", big_args, compiled),
            ]
        named.append(
            ("floor: pydantic model + ruamel + packaging", [sys.executable, "-c", FLOOR], None)
        )
        figures = measure([(cmd, cwd) for _, cmd, cwd in named], args.runs, env)
    rows = [(name, fig) for (name, _, _), fig in zip(named, figures, strict=True)]
    base_wall, base_cpu = rows[0][1]
    print(f"runs per command: {args.runs} (medians); load average: {os.getloadavg()[0]:.2f}")
    print(f"{'command':<44} {'wall s':>7} {'+wall':>7} {'cpu s':>7} {'+cpu':>7}")
    for name, (wall, cpu) in rows:
        print(f"{name:<44} {wall:7.3f} {wall - base_wall:+7.3f} {cpu:7.3f} {cpu - base_cpu:+7.3f}")
    wall, cpu = rows[-2][1]
    verdict = "meets" if wall - base_wall <= 0.5 else "misses"
    print(
        f"500-item overhead: {wall - base_wall:.3f} s wall ({verdict} the <= 0.5 s target), "
        f"{cpu - base_cpu:.3f} s CPU"
    )


def copy_tree(source: Path, dest: Path, *, compiled: bool) -> str:
    """The parts of ``source`` that ``python -m provisioner`` needs, in ``dest``, compiled as
    the image compiles them (or left as source); returns ``dest`` as the command's cwd."""
    for part in TREE_PARTS:
        shutil.copytree(source / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
    if compiled and not compileall.compile_dir(dest / "provisioner", quiet=1):
        raise SystemExit(f"cannot compile {dest / 'provisioner'}")
    return str(dest)


if __name__ == "__main__":
    main()

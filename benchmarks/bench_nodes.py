"""Benchmark: a fresh install of N custom nodes against a no-op re-apply of the same nodes.

Everything is local and real: N git repositories reached through file://, each with a
requirements.txt naming a wheel in a local folder, installed by uv (or pip) into the workspace
venv layered over an "image" venv with a fake torch. Prints wall time and the number of child
processes each phase started.

    python benchmarks/bench_nodes.py [--nodes 20] [--installer uv|pip]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provisioner.actions import nodes
from provisioner.actions.base import ApplyContext
from provisioner.core.layout import Layout
from provisioner.manifest.models import NodeSpec
from provisioner.plan import nodes as nodes_plan
from provisioner.plan.context import ObserveContext
from provisioner.software import proc
from provisioner.state.store import StateStore, load_state
from tests.support.contexts import versions
from tests.support.desired import desired_nodes
from tests.support.gitrepos import node_repo
from tests.support.wheels import build_wheel, local_only_env


def one_pass(desired, layout: Layout) -> tuple[float, int, int]:  # type: ignore[no-untyped-def]
    """(seconds, child processes, pending changes) for observe + diff + apply."""
    start = time.perf_counter()
    with proc.recording() as calls:
        octx = ObserveContext(layout, load_state(layout), versions())
        changes = nodes_plan.diff(desired, nodes_plan.observe(desired, octx))
        actx = ApplyContext(layout, StateStore(layout), versions(), log=logging.getLogger("b"))
        results = nodes.apply(changes, actx)
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    return elapsed, len(calls), sum(c.pending for c in changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--installer", choices=("uv", "pip"), default="uv")
    parser.add_argument("--repeat", type=int, default=3, help="no-op re-applies to time")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-nodes-") as tmp:
        base = Path(tmp)
        wheels = base / "wheels"
        build_wheel(wheels, "torch", "2.13.0")
        for i in range(args.nodes):
            build_wheel(wheels, f"phx-bench-{i}", "1.0", ["phx-bench-common>=1"])
        build_wheel(wheels, "phx-bench-common", "1.0")
        image = base / "image"
        subprocess.run(["uv", "venv", "-q", str(image)], check=True)
        subprocess.run(
            ["uv", "pip", "install", "-q", "--python", str(image / "bin/python"),
             "--no-index", "-f", str(wheels), "torch==2.13.0"], check=True,
        )  # fmt: skip
        os.environ.update(
            PHOENIX_BASE_PYTHON=str(image / "bin/python"),
            PHOENIX_INSTALLER=args.installer,
            **local_only_env(wheels),
        )
        specs = []
        for i in range(args.nodes):
            repo = node_repo(base / "repos", f"bench-node-{i}", requirements=f"phx-bench-{i}\n")
            repo.tag("v1.0")
            specs.append(NodeSpec(url=repo.url, ref="v1.0"))
        desired = desired_nodes(*specs)
        layout = Layout(base / "workspace")
        layout.root.mkdir()

        fresh, fresh_calls, fresh_pending = one_pass(desired, layout)
        noop = [one_pass(desired, layout) for _ in range(args.repeat)]
        noop_s = statistics.median(t for t, _, _ in noop)
        noop_calls = noop[0][1]
        assert all(p == 0 for _, _, p in noop)

    print(f"nodes: {args.nodes}, installer: {args.installer}, {os.cpu_count()} CPUs")
    print(f"{'phase':<34} {'wall time':>10} {'children':>9} {'pending':>8}")
    print(f"{'fresh install (baseline)':<34} {fresh:>9.2f}s {fresh_calls:>9} {fresh_pending:>8}")
    print(
        f"{f'no-op re-apply (median of {args.repeat})':<34} {noop_s:>9.3f}s {noop_calls:>9} {0:>8}"
    )
    print(f"speed-up: {fresh / noop_s:.0f}x; per node no-op: {noop_s / args.nodes * 1000:.1f} ms")


if __name__ == "__main__":
    main()

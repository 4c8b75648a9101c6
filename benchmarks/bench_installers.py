"""Benchmark: uv against pip installing the same requirement set from a local wheel folder.

Both install into a fresh ``--system-site-packages`` venv over the same base, from the same
folder (``--no-index --find-links``), through the same constraints file. Also times the
"already satisfied" case: each installer's own no-op against Phoenix's check (which never
starts an installer).

    python benchmarks/bench_installers.py [--packages 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provisioner.core.requirements import check, parse_requirement
from provisioner.software import pyenv
from tests.support.wheels import build_wheel


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def fresh_venv(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path)],
        check=True,
    )
    return path / "bin" / "python"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is not on PATH")
    with tempfile.TemporaryDirectory(prefix="bench-inst-") as tmp:
        base = Path(tmp)
        wheels = base / "wheels"
        reqs: list[str] = []
        for i in range(args.packages):
            deps = [f"phx-lib-{i - 1}>=1"] if i % 4 else []  # chains, so resolution has work
            build_wheel(wheels, f"phx-lib-{i}", "1.0", deps)
            build_wheel(wheels, f"phx-lib-{i}", "1.1", deps)
            reqs.append(f"phx-lib-{i}>=1")
        constraints = base / "constraints.txt"
        constraints.write_text("torch==2.13.0\n")
        index = ["--no-index", "--find-links", str(wheels)]

        def uv_cmd(py: Path) -> list[str]:
            return [uv, "pip", "install", "--python", str(py), "-c", str(constraints), *index]

        def pip_cmd(py: Path) -> list[str]:
            return [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                    "-c", str(constraints), *index]  # fmt: skip

        rows = []
        for label, cmd in (("pip", pip_cmd), ("uv", uv_cmd)):
            fresh, noop = [], []
            for _ in range(args.repeat):
                py = fresh_venv(base / f"venv-{label}")
                fresh.append(timed(cmd(py) + reqs))
                noop.append(timed(cmd(py) + reqs))
            rows.append((label, statistics.median(fresh), statistics.median(noop)))

        py = base / "venv-uv" / "bin" / "python"
        checks = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            dists = pyenv.installed_distributions(py)
            versions = dists.versions()
            assert all(
                check(parse_requirement(r), versions, dists.marker_env).satisfied for r in reqs
            )
            checks.append(time.perf_counter() - start)

    print(
        f"{args.packages} requirements ({args.packages * 2} local wheels), median of {args.repeat}"
    )
    print(f"{'installer':<28} {'fresh install':>14} {'already satisfied':>18}")
    for label, fresh_s, noop_s in rows:
        name = label + (" (baseline)" if label == "pip" else "")
        print(f"{name:<28} {fresh_s:>13.2f}s {noop_s:>17.2f}s")
    print(f"{'phoenix check (no installer)':<28} {'-':>14} {statistics.median(checks):>17.3f}s")
    pip_fresh, uv_fresh = rows[0][1], rows[1][1]
    print(f"uv speed-up on a fresh install: {pip_fresh / uv_fresh:.1f}x")


if __name__ == "__main__":
    main()

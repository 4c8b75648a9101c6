"""Build-time pip constraints for the Phoenix image (stdlib only; runs before Phoenix exists).

The NGC PyTorch base ships ``/etc/pip/constraint.txt`` (25.03 and later), which pins every
package NVIDIA installed. This script adds a second file with

* the installed torch/CUDA stack pinned to its exact versions, so that nothing installed
  later (ComfyUI's requirements, custom nodes, ``EXTRA_PYTHON_PACKAGES``) can replace it even
  if the base file is edited or absent, and
* Phoenix's own pins from ``config/versions.conf``, except for packages the base file already
  pins: there NVIDIA's tested version wins, and the superseded pin is reported.

Subcommands (all write their output atomically enough for a build step: a new file):

``write OUT --base FILE --pin NAME==VERSION ...``
    write the constraint file; print which pins were kept and which the base superseded.
``requirements IN OUT``
    copy a requirements file, dropping guarded packages (torch, torchvision, torchaudio, ...)
    that are not installed: installing one from PyPI would drag in a second torch.
``pyproject-deps PYPROJECT OUT``
    write ``[project].dependencies`` as a requirements file, so the dependency layer can be
    built before Phoenix's code is copied (a code change then does not reinstall them).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path

import tomllib

#: Distributions that make up the image's torch/CUDA stack; never replaced after the base.
#: The same set as ``provisioner.software.guard.GUARDED_NAMES`` (a test keeps them equal).
GUARDED_EXACT = frozenset(
    {"torch", "torchvision", "torchaudio", "xformers", "triton", "pytorch-triton"}
)
_GUARDED_CUDA_WHEEL = re.compile(r"^nvidia-[a-z0-9-]+-cu1\d$")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")


def canonical(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_guarded(name: str) -> bool:
    """True for a distribution of the torch/CUDA stack."""
    norm = canonical(name)
    return norm in GUARDED_EXACT or bool(_GUARDED_CUDA_WHEEL.match(norm))


def requirement_name(line: str) -> str | None:
    """The distribution a requirements/constraints line names, or None for blanks, comments,
    options (``-r``, ``--index-url``) and URLs."""
    stripped = line.split(" #", 1)[0].strip()
    if not stripped or stripped.startswith(("-", "#")) or _URL.match(stripped):
        return None
    match = _NAME.match(stripped)
    return canonical(match[1]) if match else None


def installed_distributions() -> dict[str, str]:
    """Canonical name -> version of every installed distribution."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


def guarded_pins(installed: Mapping[str, str]) -> list[str]:
    """``name==version`` for every installed distribution of the torch/CUDA stack, sorted."""
    return [f"{name}=={installed[name]}" for name in sorted(installed) if is_guarded(name)]


def parse_pins(pins: Iterable[str]) -> list[tuple[str, str]]:
    """Parse ``NAME==VERSION`` arguments; a malformed one is a ValueError naming it."""
    parsed: list[tuple[str, str]] = []
    for pin in pins:
        match = _PIN.match(pin.strip())
        if not match:
            raise ValueError(f"expected NAME==VERSION, found {pin!r}")
        parsed.append((canonical(match[1]), match[2]))
    return parsed


def merge_pins(
    pins: Sequence[tuple[str, str]], base_names: set[str]
) -> tuple[list[str], list[str]]:
    """Split pins into (kept, superseded): a package the base constraints name is superseded."""
    kept = [f"{n}=={v}" for n, v in pins if n not in base_names and not is_guarded(n)]
    superseded = [f"{n}=={v}" for n, v in pins if n in base_names or is_guarded(n)]
    return kept, superseded


def render_constraints(guarded: Sequence[str], kept: Sequence[str]) -> str:
    """The text of the Phoenix constraint file."""
    lines = ["# Generated at image build by docker/constraints.py; do not edit.",
             "# The image's torch/CUDA stack, as installed by the base image:"]
    lines += guarded
    lines.append("# Phoenix pins from config/versions.conf not already pinned by the base:")
    lines += kept
    return "\n".join(lines) + "\n"


def filter_requirements(text: str, installed: Mapping[str, str]) -> tuple[str, list[str]]:
    """Drop guarded requirements that are not installed; returns (text, dropped names)."""
    out: list[str] = []
    dropped: list[str] = []
    for line in text.splitlines():
        name = requirement_name(line)
        if name is not None and is_guarded(name) and name not in installed:
            dropped.append(name)
            continue
        out.append(line)
    return "\n".join(out) + "\n", dropped


def pyproject_dependencies(text: str) -> list[str]:
    """``[project].dependencies`` of a pyproject.toml text."""
    data = tomllib.loads(text)
    deps = data.get("project", {}).get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ValueError("[project].dependencies must be a list of strings")
    return list(deps)


def _cmd_write(args: argparse.Namespace) -> int:
    base = Path(args.base)
    base_names: set[str] = set()
    if base.is_file():
        base_names = {
            n for n in map(requirement_name, base.read_text(encoding="utf-8").splitlines()) if n
        }
    else:
        print(f"constraints: {base} not found; only Phoenix's constraints apply")
    kept, superseded = merge_pins(parse_pins(args.pin), base_names)
    guarded = guarded_pins(installed_distributions())
    if not any(p.startswith("torch==") for p in guarded):
        print("constraints: torch is not installed in the base image", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_constraints(guarded, kept), encoding="utf-8")
    for pin in guarded:
        print(f"constraints: guarded {pin}")
    for pin in kept:
        print(f"constraints: pinned {pin}")
    for pin in superseded:
        print(f"constraints: {pin} superseded by the base image's constraint")
    return 0


def _cmd_requirements(args: argparse.Namespace) -> int:
    text = Path(args.src).read_text(encoding="utf-8")
    filtered, dropped = filter_requirements(text, installed_distributions())
    Path(args.dest).write_text(filtered, encoding="utf-8")
    for name in dropped:
        print(f"constraints: not installing {name}: it would replace the image's torch stack")
    return 0


def _cmd_pyproject(args: argparse.Namespace) -> int:
    deps = pyproject_dependencies(Path(args.pyproject).read_text(encoding="utf-8"))
    Path(args.dest).write_text("".join(f"{d}\n" for d in deps), encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry; returns the exit status."""
    parser = argparse.ArgumentParser(prog="constraints.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write the Phoenix constraint file")
    w.add_argument("out")
    w.add_argument("--base", default="/etc/pip/constraint.txt")
    w.add_argument("--pin", action="append", default=[], metavar="NAME==VERSION")
    w.set_defaults(func=_cmd_write)
    r = sub.add_parser("requirements", help="filter a requirements file")
    r.add_argument("src")
    r.add_argument("dest")
    r.set_defaults(func=_cmd_requirements)
    p = sub.add_parser("pyproject-deps", help="extract [project].dependencies")
    p.add_argument("pyproject")
    p.add_argument("dest")
    p.set_defaults(func=_cmd_pyproject)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"constraints: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

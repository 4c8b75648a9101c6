"""The torch guard: no install may replace the image's torch/CUDA stack.

Every install runs with a constraints file pinning the installed ``torch``, ``torchvision``,
``torchaudio``, ``xformers``, ``triton``, ``pytorch-triton`` and ``nvidia-*`` distributions to
their current versions, merged with any ``PIP_CONSTRAINT``/``UV_CONSTRAINT`` files the image
sets. A direct requirement that conflicts fails before the installer runs; an installer refusal
that names a guarded package, or a new package whose dependencies contradict a pin, fails the
item with a :class:`GuardError` naming the package and the guarded version (new packages are
rolled back).

uv does not see packages inherited through ``--system-site-packages`` (astral-sh/uv#2500,
#7358), so with uv every inherited distribution not asked for directly is excluded from
resolution and the result is checked here instead; pip sees them and needs no exclusion.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from provisioner.core.errors import GuardError, InstallError
from provisioner.core.fsio import read_text_file
from provisioner.core.requirements import check, parse_requirement, parse_requirements_file
from provisioner.software import proc, pyenv

#: The same set as ``GUARDED_EXACT`` in docker/constraints.py (a test keeps them equal).
GUARDED_NAMES = frozenset(
    {"torch", "torchvision", "torchaudio", "xformers", "triton", "pytorch-triton"}
)
HINT = (
    "Phoenix never replaces the image's torch/CUDA stack; pick a version of the node or "
    "package that supports the installed one, or an image that ships the torch it needs"
)


def is_guarded(name: str) -> bool:
    """True for torch, torchvision, torchaudio, xformers, (pytorch-)triton, ``nvidia-*``."""
    key = canonicalize_name(name)
    return key in GUARDED_NAMES or key.startswith("nvidia-")


def absent_guarded(requirements: Sequence[str], installed: Mapping[str, str]) -> list[str]:
    """The requirements that name a guarded package the environment lacks (pure).

    Real ComfyUI and many custom nodes list torchaudio; the image has none and must not get one
    from PyPI (a wheel there pins a torch of its own; docker/constraints.py leaves it out at
    build), so asking for it fails every start. Callers installing ComfyUI's or a node's own
    requirements leave these out and say so; a package the user asks for by name is not.
    """
    return [
        req
        for req in requirements
        if is_guarded(name := canonicalize_name(parse_requirement(req).name))
        and name not in installed
    ]


def unmet(requirements: Sequence[str], dists: pyenv.Distributions) -> tuple[str, ...]:
    """The requirements ``dists`` does not satisfy, less those apply leaves out (pure).

    What a plan reports as pending for ComfyUI's or a node's ``requirements.txt``: a guarded
    package the image lacks (:func:`absent_guarded`) is never installed, so it is never pending.
    """
    versions = dists.versions()
    left_out = absent_guarded(requirements, versions)
    return tuple(
        r
        for r in requirements
        if r not in left_out
        and not check(parse_requirement(r), versions, dists.marker_env).satisfied
    )


def left_out_note(left_out: Sequence[str]) -> str:
    """The summary words for requirements :func:`absent_guarded` left out ('' when none)."""
    if not left_out:
        return ""
    return (
        f"; left out {', '.join(left_out)}: guarded and not in the image (a PyPI wheel would "
        "replace its torch), so features that import it are unavailable"
    )


@dataclass(frozen=True)
class Guard:
    """The pins, plus the image's own constraint lines and sources merged into one file."""

    pins: dict[str, str]
    image_lines: tuple[str, ...] = ()
    #: PIP_CONSTRAINT/UV_CONSTRAINT entries that are not local files (URLs): passed through
    remote_sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def constraints_text(self) -> str:
        """The constraints file: pins first, then the image's lines."""
        lines = ["# written by phoenix: the torch guard"]
        lines += [f"{name}=={version}" for name, version in sorted(self.pins.items())]
        if self.image_lines:
            lines.append("# from the image's PIP_CONSTRAINT/UV_CONSTRAINT")
            lines += list(self.image_lines)
        return "\n".join(lines) + "\n"


def build_guard(dists: pyenv.Distributions, env: Mapping[str, str]) -> Guard:
    """Pin every guarded distribution ``dists`` has; merge the image's constraint files."""
    pins = {key: d.version for key, d in dists.dists.items() if is_guarded(key)}
    lines: list[str] = []
    remote: list[str] = []
    notes: list[str] = []
    seen: set[str] = set()
    for var in ("PIP_CONSTRAINT", "UV_CONSTRAINT"):
        for source in env.get(var, "").split():
            if source in seen:
                continue
            seen.add(source)
            if "://" in source and not source.startswith("file://"):
                remote.append(source)
                continue
            path = Path(source.removeprefix("file://"))
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                notes.append(f"{var} file {path} unreadable ({why}); ignored")
                continue
            for raw in text.splitlines():
                line = raw.split("#", 1)[0].strip()
                if line:
                    lines.append(line)
    return Guard(pins, tuple(lines), tuple(remote), tuple(notes))


def conflict(req: Requirement, guard: Guard, marker_env: Mapping[str, str]) -> str | None:
    """A message when ``req`` asks for a guarded package in a version other than the pin."""
    key = canonicalize_name(req.name)
    if key not in guard.pins:
        return None
    verdict = check(req, {key: guard.pins[key]}, marker_env)
    if verdict.satisfied and not req.url:
        return None
    return (
        f"requirement {str(req)!r} conflicts with the torch guard: "
        f"{key} is pinned to {guard.pins[key]} (the image's version)"
    )


def check_direct(
    requirements: Sequence[str], guard: Guard, marker_env: Mapping[str, str], where: str
) -> None:
    """Raise :class:`GuardError` for the first requirement that contradicts a pin."""
    for text in requirements:
        message = conflict(parse_requirement(text), guard, marker_env)
        if message:
            raise GuardError(message, where=where, hint=HINT)


def guarded_in_output(output: str, guard: Guard) -> str | None:
    """The first pinned package an installer's failure output names, if any."""
    lowered = output.lower()
    for key in sorted(guard.pins, key=len, reverse=True):
        pattern = rf"(?<![a-z0-9_-]){re.escape(key)}(?![a-z0-9_-])".replace(r"\-", "[-_]")
        if re.search(pattern, lowered):
            return key
    return None


def check_after(before: pyenv.Distributions, after: pyenv.Distributions, guard: Guard) -> list[str]:
    """Problems an install caused: a pin moved, or a new/changed dist contradicts a pin."""
    problems: list[str] = []
    for key, version in guard.pins.items():
        now = after.dists.get(key)
        was = before.dists.get(key)
        if now is None or now.version != version or (was and now.in_env and not was.in_env):
            problems.append(f"{key} {version} was replaced ({now.version if now else 'removed'})")
    for key, dist in after.dists.items():
        old = before.dists.get(key)
        if old is not None and old.version == dist.version:
            continue
        for text in dist.requires:
            try:
                req = parse_requirement(text)
            except ValueError:
                continue
            message = conflict(req, guard, after.marker_env)
            if message:
                problems.append(f"{dist.name} {dist.version} needs {text!s}: {message}")
    return problems


@dataclass(frozen=True)
class InstallOutcome:
    """What a guarded install did."""

    ran: bool
    installed: tuple[str, ...]
    skipped: tuple[str, ...]
    after: pyenv.Distributions
    #: guarded requirements the environment lacks, not installed (``leave_out_absent``)
    left_out: tuple[str, ...] = ()


def guarded_install(
    python: Path,
    requirements: Sequence[str],
    *,
    what: str,
    requirements_file: Path | None = None,
    staging: Path,
    before: pyenv.Distributions | None = None,
    leave_out_absent: bool = False,
) -> InstallOutcome:
    """Install what of ``requirements`` (and ``requirements_file``) is missing, through the guard.

    Already-satisfied requirements are skipped; when nothing is missing no installer runs. With
    ``leave_out_absent`` a guarded package the environment lacks is left out
    (:func:`absent_guarded`) rather than fetched; a file pip must read itself (``-r``/``-e``
    lines) still goes whole, so only ``requirements`` can leave things out then.
    Raises :class:`GuardError` (a pin would move) or :class:`InstallError` naming ``what``.
    """
    before = before or pyenv.installed_distributions(python)
    guard = build_guard(before, os.environ)
    reqs = list(requirements)
    opaque: tuple[str, ...] = ()
    if requirements_file is not None:
        text = read_text_file(
            requirements_file,
            f"{requirements_file.name} of {what}",
            InstallError,
            "fix the file in the node's repository, or pin a ref where it is readable",
        )
        parsed = parse_requirements_file(text)
        reqs += list(parsed.requirements)
        opaque = parsed.opaque
    versions = before.versions()
    # an opaque file goes to the installer whole: only the explicit list can leave things out
    own = list(requirements) if opaque else reqs
    left_out = tuple(absent_guarded(own, versions)) if leave_out_absent else ()
    reqs = [r for r in reqs if r not in left_out]
    check_direct(reqs, guard, before.marker_env, what)
    missing = [
        r for r in reqs if not check(parse_requirement(r), versions, before.marker_env).satisfied
    ]
    skipped = tuple(r for r in reqs if r not in missing)
    if not missing and not opaque:
        return InstallOutcome(False, (), skipped, before, left_out)
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="guard-", dir=staging) as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(guard.constraints_text(), encoding="utf-8")
        argv = [*pyenv.installer_argv(python), "-c", str(constraints)]
        for source in guard.remote_sources:
            argv += ["-c", source]
        if pyenv.installer_name() == "uv":
            asked = {canonicalize_name(parse_requirement(r).name) for r in missing}
            inherited = sorted(
                k for k, d in before.dists.items() if not d.in_env and k not in asked
            )
            if inherited:
                excludes = Path(tmp) / "excludes.txt"
                excludes.write_text("\n".join(inherited) + "\n", encoding="utf-8")
                argv += ["--excludes", str(excludes)]
        argv += ["-r", str(requirements_file)] if opaque and requirements_file else missing
        env = proc.child_env(drop=("PIP_CONSTRAINT", "UV_CONSTRAINT"))
        try:
            result = proc.run(argv, env=env, timeout=pyenv.INSTALL_TIMEOUT)
        except proc.Timeout as exc:
            raise InstallError(f"install timed out: {exc}", where=what) from exc
    if not result.ok:
        name = guarded_in_output(result.output, guard)
        if name is not None:
            raise GuardError(
                f"the installer refused a change to guarded {name} "
                f"(pinned to {guard.pins[name]}):\n{result.tail(8)}",
                where=what,
                hint=HINT,
            )
        raise InstallError(f"install failed:\n{result.tail(12)}", where=what)
    after = pyenv.installed_distributions(python, requires=True)
    problems = check_after(before, after, guard)
    if problems:
        _roll_back(python, before, after)
        raise GuardError("; ".join(problems) + " (rolled back)", where=what, hint=HINT)
    return InstallOutcome(True, tuple(missing) + opaque, skipped, after, left_out)


def _roll_back(python: Path, before: pyenv.Distributions, after: pyenv.Distributions) -> None:
    """Uninstall the distributions an install added to the environment (best effort)."""
    added = [d.name for k, d in after.dists.items() if d.in_env and k not in before.dists]
    if added:
        proc.run(pyenv.uninstaller_argv(python) + added, timeout=pyenv.INSTALL_TIMEOUT)

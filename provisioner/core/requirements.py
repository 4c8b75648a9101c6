"""PEP 508 requirements: split env-var lists, parse, check against installed distributions.

Pure functions; installed distributions come in as data (``pyenv.installed_distributions``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from packaging.markers import InvalidMarker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

_OP = r"(?:===|==|!=|~=|<=|>=|<|>)"
_SPEC = rf"{_OP}\s*[^\s,;<>=!~]+"
_ITEM = re.compile(
    r"(?P<req>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"  # name
    r"(?:\s*\[[^\]]*\])?"  # extras
    rf"(?:\s*@\s*[^\s,]+|\s*{_SPEC}(?:\s*,\s*{_SPEC})*)?)"  # URL or specifier list
    r"\s*(?:,|\s|$)"
)


def split_requirements(text: str) -> list[str]:
    """Split an env value into requirements on commas, whitespace and newlines.

    A comma that continues a specifier list stays inside it:
    ``"numpy>=1.26,<3 six"`` → ``["numpy>=1.26,<3", "six"]``. A line with an environment
    marker (``;``) is one requirement. Raises ``ValueError`` naming the first bad item.
    """
    out: list[str] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if ";" in line:
            out.append(_validated(line))
            continue
        pos = 0
        while pos < len(line):
            while pos < len(line) and (line[pos].isspace() or line[pos] == ","):
                pos += 1
            if pos >= len(line):
                break
            match = _ITEM.match(line, pos)
            if match is None:
                bad = re.split(r"[\s,]", line[pos:], maxsplit=1)[0]
                raise ValueError(f"{bad!r} is not a valid requirement (PEP 508)")
            out.append(
                _validated(
                    re.sub(r"\s+", "", match.group("req"))
                    if "@" not in match.group("req")
                    else match.group("req")
                )
            )
            pos = match.end()
    return out


def _validated(text: str) -> str:
    parse_requirement(text)
    return text


@functools.lru_cache(maxsize=4096)
def parse_requirement(text: str) -> Requirement:
    """Parse one PEP 508 requirement; ``ValueError`` names the item and what is wrong.

    Cached: one plan checks each requirement in the env split, the merge and the diff; the
    result is shared, so callers must not change it.
    """
    try:
        return Requirement(text)
    except (InvalidRequirement, InvalidMarker) as exc:
        raise ValueError(f"{text!r} is not a valid requirement (PEP 508): {exc}") from exc


@dataclass(frozen=True)
class Verdict:
    """Whether one requirement is met by the installed distributions, and why."""

    satisfied: bool
    installed: str | None
    reason: str


def check(
    req: Requirement, installed: Mapping[str, str], marker_env: Mapping[str, str] | None = None
) -> Verdict:
    """Is ``req`` met by ``installed`` (canonical name → version)?

    A requirement whose marker does not apply here is met. A URL requirement (``name @ url``)
    is met by any installed version (pip does the same). Extras are not followed.
    """
    if req.marker is not None and marker_env is not None:
        env = {**marker_env, "extra": ""}
        if not req.marker.evaluate(env):
            return Verdict(True, None, "marker does not apply here")
    version = installed.get(canonicalize_name(req.name))
    if version is None:
        return Verdict(False, None, "not installed")
    if req.url:
        return Verdict(True, version, f"{req.name} {version} installed")
    try:
        ok = req.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        ok = version in req.specifier or not str(req.specifier)
    if ok:
        return Verdict(True, version, f"{req.name} {version} installed")
    return Verdict(False, version, f"{req.name} {version} installed, need {req.specifier}")


@dataclass(frozen=True)
class RequirementsFile:
    """A requirements.txt split into PEP 508 lines and lines only an installer understands."""

    requirements: tuple[str, ...]
    #: options, editable installs, VCS/URL lines: the file must then be passed to the installer
    opaque: tuple[str, ...]


def parse_requirements_file(text: str) -> RequirementsFile:
    """Split requirements.txt text; comments and blank lines are dropped, continuations joined."""
    reqs: list[str] = []
    opaque: list[str] = []
    for line in text.replace("\\\n", " ").splitlines():
        stripped = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not stripped:
            continue
        if stripped.startswith("-") or ("://" in stripped and "@" not in stripped):
            opaque.append(stripped)
            continue
        try:
            parse_requirement(stripped)
        except ValueError:
            opaque.append(stripped)
        else:
            reqs.append(stripped)
    return RequirementsFile(tuple(reqs), tuple(opaque))

"""Every command in the docs' code blocks uses variables, flags and build args that exist.

Code blocks in ``docs/*.md`` and ``README.md`` are read as shell: ``docker run`` lines give
their ``-e`` variable names (checked against the env var table) and the arguments after the
image (checked by parsing them with Phoenix's real CLI parser, since the image's entry point is
``phoenix``); ``docker build --build-arg`` names are checked against versions.conf; lines that
start with ``phoenix`` (optionally after ``VAR=value`` assignments) are parsed the same way.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from provisioner.cli import build_parser
from provisioner.core.config import load_versions
from provisioner.generate.template import default_image
from provisioner.manifest.envmap import BY_NAME

ROOT = Path(__file__).resolve().parents[1]
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
FENCE = re.compile(r"^```([\w-]*)\s*\n(.*?)^```\s*$", re.M | re.S)
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")

#: docker run options that take a value (the rest used in docs are plain flags).
DOCKER_VALUE_OPTS = {
    "-e", "--env", "-v", "--volume", "-p", "--publish", "--gpus", "--name", "--env-file",
    "--mount", "--entrypoint", "-w", "--workdir", "--shm-size", "--ulimit", "-u", "--user",
    "--network", "--restart", "-m", "--memory", "--cpus",
}
DOCKER_FLAGS = {"--rm", "-d", "--detach", "-i", "-t", "-it", "--init", "--read-only"}


@dataclass
class Findings:
    """What the code blocks of some Markdown use, and what is wrong with it."""

    docker_runs: list[list[str]] = field(default_factory=list)
    phoenix_argvs: list[list[str]] = field(default_factory=list)
    env_names: set[str] = field(default_factory=set)
    build_args: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def shell_commands(markdown: str) -> list[str]:
    """Commands in shell code blocks: continuations joined, prompts and comments dropped."""
    commands: list[str] = []
    for match in FENCE.finditer(markdown):
        if match[1].lower() not in SHELL_LANGS:
            continue
        joined = re.sub(r"\\\n\s*", " ", match[2])
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ")
            if line and not line.startswith("#"):
                commands.extend(part.strip() for part in re.split(r"&&|;|\|\|?", line))
    return [c for c in commands if c]


def _check_phoenix_argv(argv: list[str], where: str, found: Findings) -> None:
    found.phoenix_argvs.append(argv)
    if not argv:
        return  # the image's default command: `phoenix run`
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                found.problems.append(f"{where}: phoenix {' '.join(argv)}: {err.getvalue()}")


def _check_docker_run(tokens: list[str], where: str, found: Findings) -> None:
    found.docker_runs.append(tokens)
    i, entrypoint = 2, None
    while i < len(tokens):
        tok = tokens[i]
        name, eq, value = tok.partition("=")
        if name in DOCKER_VALUE_OPTS:
            value = value if eq else (tokens[i + 1] if i + 1 < len(tokens) else "")
            i += 1 if eq else 2
            if name in {"-e", "--env"}:
                found.env_names.add(value.split("=", 1)[0])
            if name == "--entrypoint":
                entrypoint = value
            continue
        if tok in DOCKER_FLAGS:
            i += 1
            continue
        if tok.startswith("-"):
            found.problems.append(f"{where}: unknown docker run option {tok} (teach the test)")
            i += 1
            continue
        if entrypoint is None:  # tok is the image; the rest goes to the `phoenix` entry point
            _check_phoenix_argv(tokens[i + 1 :], where, found)
        return
    found.problems.append(f"{where}: docker run without an image")


_REDIRECT = re.compile(r"^(?:\d|&)?(?:>>?|<)(.*)$")


def _without_redirections(tokens: list[str]) -> list[str]:
    """Drop shell redirections (``> plan.json``, ``2>/dev/null``, ``< in``) and their targets."""
    kept: list[str] = []
    skip_next = False
    for tok in tokens:
        if skip_next:
            skip_next = False
            continue
        match = _REDIRECT.match(tok)
        if match:
            skip_next = match[1] == ""
            continue
        kept.append(tok)
    return kept


def check_markdown(markdown: str, where: str) -> Findings:
    """All findings for one Markdown text."""
    found = Findings()
    for command in shell_commands(markdown):
        try:
            tokens = shlex.split(command)
        except ValueError as exc:
            found.problems.append(f"{where}: cannot split {command!r}: {exc}")
            continue
        tokens = _without_redirections(tokens)
        while tokens and ASSIGNMENT.match(tokens[0]):
            found.env_names.add(ASSIGNMENT.match(tokens[0])[1])  # type: ignore[index]
            tokens = tokens[1:]
        if tokens[:2] == ["docker", "run"]:
            _check_docker_run(tokens, where, found)
        elif tokens[:2] == ["docker", "build"]:
            for i, tok in enumerate(tokens):
                if tok == "--build-arg" and i + 1 < len(tokens):
                    found.build_args.add(tokens[i + 1].split("=", 1)[0])
        elif tokens and tokens[0] == "phoenix":
            _check_phoenix_argv(tokens[1:], where, found)
    versions = load_versions()
    for name in sorted(found.env_names - set(BY_NAME)):
        found.problems.append(f"{where}: -e {name} is not a variable Phoenix reads")
    for name in sorted(found.build_args - set(versions.values)):
        found.problems.append(f"{where}: --build-arg {name} is not a Dockerfile ARG")
    return found


DOC_FILES = sorted((ROOT / "docs").glob("*.md")) + [
    p for p in [ROOT / "README.md"] if p.exists()
]


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_doc_commands_use_only_real_variables_flags_and_args(path: Path) -> None:
    found = check_markdown(path.read_text(encoding="utf-8"), path.name)
    assert found.problems == []


def test_image_doc_has_the_four_run_examples() -> None:
    found = check_markdown((ROOT / "docs" / "image.md").read_text(encoding="utf-8"), "image.md")
    runs = [" ".join(t) for t in found.docker_runs]
    default = [r for r in runs if r.endswith(default_image()) and "-e HUGGINGFACE_TOKEN" in r
               and "PHOENIX_MANIFEST" not in r and "USE_VOLUME" not in r]
    manifest = [r for r in runs if "PHOENIX_MANIFEST=/config/manifest.yaml" in r
                and ":/config/manifest.yaml" in r]
    volume = [r for r in runs if "USE_VOLUME=true" in r and ":/workspace" in r]
    paranoid = [r for r in runs if "PARANOID_MODE=true" in r]
    assert default and manifest and volume and paranoid
    assert all("--gpus all" in r for r in default + manifest + volume + paranoid)
    assert {"validate", "plan"} <= {argv[0] for argv in found.phoenix_argvs if argv}


def test_no_doc_puts_a_token_value_on_a_command_line() -> None:
    """docs/ pass secrets by name (``-e HUGGINGFACE_TOKEN``), never as a value in argv."""
    for path in sorted((ROOT / "docs").glob("*.md")):
        for command in shell_commands(path.read_text(encoding="utf-8")):
            assert not re.search(r"(TOKEN|PASSWORD)=\S", command), f"{path.name}: {command}"


BAD_DOC = """
```bash
docker run --rm --gpus all -e HUGGINGFACE_TOKEN -e NOT_A_VARIABLE=1 phoenix:0.1.0 plan --nope
HF_TOKEN=x DEBUGMODE=1 phoenix validate --manifest m.yaml
phoenix frobnicate
docker build --build-arg COMFYUI_COMIT=abc .
docker run --rm --shiny phoenix:0.1.0
```

```python
phoenix --not-checked-in-python-blocks
```
"""


def test_the_checker_reports_each_kind_of_mistake() -> None:
    found = check_markdown(BAD_DOC, "bad.md")
    text = "\n".join(found.problems)
    assert "phoenix plan --nope" in text
    assert "NOT_A_VARIABLE is not a variable" in text
    assert "DEBUGMODE is not a variable" in text and "HF_TOKEN" not in text
    assert "phoenix frobnicate" in text
    assert "COMFYUI_COMIT is not a Dockerfile ARG" in text
    assert "unknown docker run option --shiny" in text
    assert "not-checked" not in text
    assert len(found.problems) == 6


def test_the_checker_accepts_correct_commands() -> None:
    good = (
        "```bash\n"
        "docker run --rm -v \"$PWD/m.yaml:/m.yaml:ro\" \\\n"
        "  -e PHOENIX_MANIFEST=/m.yaml phoenix:0.1.0 plan --format json --detailed-exitcode\n"
        "$ phoenix env --tier Basic && phoenix template --api > t.json 2>/dev/null\n"
        "docker build --build-arg COMFYUI_COMMIT=abc -t x .\n"
        "```\n"
    )
    found = check_markdown(good, "good.md")
    assert found.problems == []
    assert found.env_names == {"PHOENIX_MANIFEST"} and found.build_args == {"COMFYUI_COMMIT"}
    assert len(found.phoenix_argvs) == 3

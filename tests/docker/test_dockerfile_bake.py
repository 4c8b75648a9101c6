"""docker/Dockerfile.bake: tokens only as build secrets, a locked apply into a root outside
/workspace as sduser, nothing staged left behind, hadolint-clean. Parsed here; built and started
offline by ``python3 docker/rehearse.py --bake`` (root, buildah: .ci/run's rehearsal step)."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from provisioner.core.layout import Layout
from provisioner.generate.template import default_image
from provisioner.state.lockfile import lock_path_for
from tests.docker.test_dockerfile import (
    SECRETISH,
    Instruction,
    assert_hadolint_clean,
    parse_dockerfile,
)
from tests.support.paths import REPO

BAKE = REPO / "docker" / "Dockerfile.bake"
INSTRUCTIONS = parse_dockerfile(BAKE.read_text(encoding="utf-8"))
MAIN = parse_dockerfile((REPO / "Dockerfile").read_text(encoding="utf-8"))


def _all(keyword: str, instructions: list[Instruction] = INSTRUCTIONS) -> list[Instruction]:
    return [i for i in instructions if i.keyword == keyword]


def _env() -> dict[str, str]:
    found: dict[str, str] = {}
    for ins in _all("ENV"):
        found.update(re.findall(r"([A-Za-z_]\w*)=(\S+)", ins.args))
    return found


def _apply_run() -> Instruction:
    runs = [i for i in _all("RUN") if "phoenix apply" in i.args]
    assert len(runs) == 1, "exactly one RUN fetches"
    return runs[0]


def test_hadolint_is_clean() -> None:
    assert_hadolint_clean(BAKE)


def test_builds_on_the_phoenix_image_by_default() -> None:
    (arg,) = [i for i in _all("ARG") if i.args.startswith("PHOENIX_IMAGE=")]
    assert arg.args == f"PHOENIX_IMAGE={default_image()}"  # the tag the README's build gives
    assert [i.args for i in _all("FROM")] == ["${PHOENIX_IMAGE}"]
    assert INSTRUCTIONS.index(arg) < INSTRUCTIONS.index(_all("FROM")[0])


def test_no_token_as_arg_or_env_only_as_secret_mounts() -> None:
    names = [i.args.partition("=")[0] for i in _all("ARG")] + list(_env())
    assert names and not [n for n in names if SECRETISH.search(n)]
    run = _apply_run()
    mounts = re.findall(r"--mount=(\S+)", run.args)
    secrets = {dict(kv.split("=", 1) for kv in m.split(","))["id"] for m in mounts}
    assert secrets == {"hf_token", "civitai_token"}
    for m in mounts:
        assert "type=secret" in m and "mode=0400" in m
    # each token is read from its secret file inside the RUN, into Phoenix's own variable
    assert 'HUGGINGFACE_TOKEN="$(cat /run/secrets/hf_token)"' in run.args
    assert 'CIVITAI_TOKEN="$(cat /run/secrets/civitai_token)"' in run.args
    assert not [i for i in INSTRUCTIONS if i is not run and "/run/secrets" in i.args]


def test_the_apply_is_locked_as_sduser_and_leaves_nothing_staged() -> None:
    run = _apply_run()
    assert "phoenix apply --locked" in run.args
    # the uid the image's Dockerfile gives sduser (and phoenix run drops to)
    (useradd,) = [i for i in _all("RUN", MAIN) if "useradd" in i.args]
    uid = re.search(r"--uid (\d+)", useradd.args)
    assert uid and f"--reuid={uid[1]}" in run.args and f"--regid={uid[1]}" in run.args
    staging = Layout(Path("/root")).staging.relative_to("/root")  # where .part files stage
    assert f'rm -rf "${{PHOENIX_ROOT}}/{staging}"' in run.args
    assert "phoenix plan --detailed-exitcode" in run.args  # a build that is not converged fails


def test_the_baked_root_is_outside_the_workspace_volume_and_named_by_env() -> None:
    env = _env()
    root = PurePosixPath(env["PHOENIX_ROOT"])
    assert not root.is_relative_to("/workspace") and root.is_absolute()
    manifest = PurePosixPath(env["PHOENIX_MANIFEST"])
    (copy,) = _all("COPY")
    *sources, dest = copy.args.split()
    assert PurePosixPath(dest) == manifest.parent
    # the lock file is the one apply --locked looks for beside the manifest
    assert sources == [manifest.name, lock_path_for(str(manifest)).name]


def test_the_baked_image_starts_phoenix_run_locked() -> None:
    # the image's ENTRYPOINT (tini -- phoenix) stays; only the command gains --locked
    assert [i.args for i in _all("CMD")] == ['["run", "--locked"]']
    assert not _all("ENTRYPOINT")

"""The bake rehearsal (issue #13): docker/Dockerfile.bake on the rehearsed image, then a cold start.

Run by ``python3 docker/rehearse.py --bake`` after the image rehearsal, on the image it built:

1. A Civitai-like loopback source (tests/support/civitai.py: the API on 127.0.0.1, which
   answers 401 without the planted token, and its CDN on 127.0.0.2) serves a LoRA of
   ``BAKED_MIB`` MiB. ``phoenix lock`` on the host writes the lock file beside the manifest.
2. ``buildah bud -f docker/Dockerfile.bake`` with the token only as a build secret
   (``--secret id=civitai_token,src=FILE``; a second planted one as ``hf_token``). The build
   can only succeed if the secret reached the fetch (the API refuses without it).
3. Every layer, the config and the history of the baked image are searched for both tokens.
4. The baked image starts with ``--network none`` and no mount: ready on /readyz (asked from
   inside the container), the baked file verified at PHOENIX_ROOT, nothing fetched.
5. The same manifest on the unbaked image (host network, fetching from the loopback source)
   gives the cold start to compare; both times are printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import rehearsal_checks as checks
from rehearse import CONTAINER, IMAGE, PREFIX, ROOT, Rehearsal, host_ulimits, http_get, wait_for

sys.path.insert(0, str(ROOT))

from tests.support.civitai import LoopbackHub  # the repo root is on the path now
from tests.support.safetensors import safetensors_bytes

BAKED = f"localhost/{PREFIX}baked:latest"
BAKED_CONTAINER = f"{PREFIX}baked"
#: big enough that a fetch shows in the cold start, small enough for CI (written once to RAM)
BAKED_MIB = 256
MODEL_ID, VERSION_ID = 900001, 900101
LORA = "rehearsal-baked-lora.safetensors"
#: the unbaked start's source is paced per connection: 8 connections (Phoenix's default) at
#: 15 MiB/s are about 1 Gbit/s, a stand-in for a real link (the bake itself is not paced)
PACE = 15 << 20
BAKED_ROOT = "/opt/phoenix/baked"

#: asked inside the container (``--network none``: the host cannot reach it)
READYZ = (
    "import urllib.request, sys\n"
    "try:\n"
    "    sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8189/readyz', timeout=3)"
    ".status == 200 else 1)\n"
    "except Exception:\n"
    "    sys.exit(1)\n"
)


def bake_manifest(r: Rehearsal) -> str:
    """The manifest baked: the fake ComfyUI at its commit (nothing to fetch) and one LoRA."""
    return (
        "version: 1\n"
        "comfyui:\n"
        f"  repo: {r.build_args['COMFYUI_REPO']}\n"
        f"  ref: {r.build_args['COMFYUI_COMMIT']}\n"
        "models:\n"
        f"  - civitai: {MODEL_ID}\n"
        "    type: loras\n"
    )


def _lock(r: Rehearsal, context: Path, hub: LoopbackHub) -> None:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(r.work),
        "PYTHONPATH": str(ROOT),
        "CIVITAI_API_BASE": hub.api_base,
        "CIVITAI_TOKEN": r.build_token,
    }
    argv = [sys.executable, "-m", "provisioner", "lock", "--manifest"]
    r._run([*argv, str(context / "manifest.yaml")], True, True, env, 120)


def _build(r: Rehearsal, context: Path, hub: LoopbackHub, secrets: Path) -> str:
    argv = [
        "bud", "--isolation", "chroot", "--pull=never", "--format", "docker",
        "--network", "host",
        "--secret", f"id=civitai_token,src={secrets / 'civitai_token'}",
        "--secret", f"id=hf_token,src={secrets / 'hf_token'}",
        "--build-arg", f"PHOENIX_IMAGE={IMAGE}",
        "--build-arg", f"CIVITAI_API_BASE={hub.api_base}",
        "--tag", BAKED, "--file", str(ROOT / "docker" / "Dockerfile.bake"), str(context),
    ]  # fmt: skip
    proc = r.buildah(*argv, check=False, capture=True)
    log = proc.stdout + proc.stderr
    (r.work / "build-baked.log").write_text(log, encoding="utf-8")
    if proc.returncode != 0:
        raise RuntimeError(f"buildah bud (bake) exited {proc.returncode}:\n{log[-4000:]}")
    return log


def _cold_start(
    r: Rehearsal,
    argv: list[str],
    name: str,
    ready: Callable[[], bool],
    env: dict[str, str] | None = None,
) -> float:
    """Seconds from ``podman run`` to ready (``ready()`` true), or -1 when it never was."""
    began = time.monotonic()
    r.podman("run", "--detach", "--name", name, *host_ulimits(), "--no-healthcheck", *argv, env=env)
    ok = wait_for(lambda: ready() or not r.running(name), 240, every=0.3)
    took = time.monotonic() - began
    return took if ok and r.running(name) else -1.0


def run_bake(r: Rehearsal) -> None:
    """Bake, scan, start offline, compare with the unbaked cold start; records checks."""
    r.podman("rm", "--force", "--all", check=False)
    tokens = [r.build_token.encode(), r.run_token.encode()]
    context, secrets = r.work / "bake-context", r.work / "bake-secrets"
    for folder in (context, secrets):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
    (secrets / "civitai_token").write_text(r.build_token, encoding="utf-8")
    (secrets / "hf_token").write_text(r.run_token, encoding="utf-8")
    (context / "manifest.yaml").write_text(bake_manifest(r), encoding="utf-8")
    hub = LoopbackHub()
    try:
        with r.phase(f"bake: a {BAKED_MIB} MiB LoRA on the loopback Civitai, phoenix lock"):
            data = safetensors_bytes({"lora_unet_rehearsal.lora_down.weight": BAKED_MIB << 19})
            hub.add_model(
                MODEL_ID, name="Rehearsal", type="LORA",
                versions=[{"id": VERSION_ID, "files": [{"name": LORA, "data": data}]}],
            )  # fmt: skip
            hub.required_token = r.build_token
            _lock(r, context, hub)
            sha = json.loads((context / "manifest.lock.json").read_text())
            r.check(
                "phoenix lock pins the model (manifest.lock.json beside the manifest)",
                str(VERSION_ID) in json.dumps(sha),
            )
            hub.reset()
        with r.phase("bake: buildah bud -f docker/Dockerfile.bake (token as a build secret)"):
            _build(r, context, hub, secrets)
            api = hub.requests_to("/api/", "api")
            cdn = hub.requests_to("/files/", "cdn")
            authed = all(x.headers.get("Authorization") == f"Bearer {r.build_token}" for x in api)
            r.check(
                "the bake fetched through the secret: every API request carried it",
                bool(api) and authed and all(x.status < 400 for x in api),
                f"{len(api)} API request(s), {checks.human(hub.bytes_sent()).strip()} from the CDN",
            )
            r.check(
                "the token went to the API host only, never to the CDN",
                bool(cdn) and not any("Authorization" in x.headers for x in cdn),
            )
        _scan(r, tokens)
        hub.reset()
        with r.phase("bake: cold start with --network none"):
            baked_s = _cold_start(
                r, ["--network", "none", BAKED], BAKED_CONTAINER,
                lambda: r.podman(
                    "exec", BAKED_CONTAINER, "python3", "-c", READYZ, check=False
                ).returncode == 0,
            )  # fmt: skip
            logs = r.podman("logs", BAKED_CONTAINER, check=False)
            r.check(
                "the baked image starts with no network: /readyz 200",
                baked_s >= 0,
                f"{baked_s:.1f} s" if baked_s >= 0 else (logs.stdout + logs.stderr)[-2500:],
            )
            _offline_checks(r, data)
            r.check("nothing was fetched at run time", not hub.records, f"{len(hub.records)}")
            said = logs.stdout + logs.stderr
            r.check(
                "phoenix run --locked applied with no failed item",
                not any(f"apply: {kind} item" in said for kind in ("optional", "required")),
                "\n".join(ln for ln in said.splitlines() if "failed" in ln)[-800:],
            )
            r.podman("stop", "--time", "10", BAKED_CONTAINER, check=False)
            code = json.loads(r.podman("inspect", BAKED_CONTAINER).stdout)[0]["State"]["ExitCode"]
            r.check("podman stop: the baked container exits 0", code == 0, f"exit {code}")
            r.podman("rm", "--force", BAKED_CONTAINER, check=False)
        with r.phase("bake: the same manifest unbaked, fetching from a paced loopback"):
            for served in hub.files.values():
                served.rate = PACE
            plain_s = _unbaked_start(r, context, hub)
        rate = BAKED_MIB / max(plain_s - baked_s, 1e-3)
        print(
            f"    cold start to ready: baked {baked_s:.1f} s (no network, 0 bytes fetched) vs "
            f"unbaked {plain_s:.1f} s ({BAKED_MIB} MiB at {PACE >> 20} MiB/s per connection): "
            f"{plain_s / max(baked_s, 1e-3):.1f}x; the difference is the download, about "
            f"{rate:.0f} MiB/s here, so FLUX.1-dev's 34 GB would add about "
            f"{34e9 / (rate * 2**20):.0f} s"
        )
    finally:
        hub.close()
        r.podman("rm", "--force", "--all", check=False)


def _scan(r: Rehearsal, tokens: list[bytes]) -> None:
    with r.phase("bake: save the baked image and search every layer, config and history"):
        archive = r.work / "baked.tar"
        r.podman("save", "--format", "docker-archive", "--output", str(archive), BAKED)
        layers = checks.layers_of_archive(archive)
        for layer in layers[-3:]:
            print(f"    {checks.human(layer.size)}  {layer.created_by[:100]}")
        hits = checks.secrets_in_archive(archive, tokens)
        history = r.podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", BAKED).stdout
        config = r.podman("image", "inspect", BAKED).stdout
        in_meta = [t.decode() for t in tokens if t.decode() in history + config]
        r.check(
            "no planted build secret in any layer, the config or the history",
            not hits and not in_meta,
            ", ".join(sorted(hits)[:5] + in_meta[:2]),
        )
        archive.unlink()
        env = json.loads(config)[0]["Config"]["Env"]
        r.check(
            "the baked image's ENV names no token, only the baked root and manifest",
            not any("TOKEN" in e.split("=", 1)[0] for e in env)
            and f"PHOENIX_ROOT={BAKED_ROOT}" in env,
            ", ".join(e for e in env if e.startswith("PHOENIX_")),
        )


def _offline_checks(r: Rehearsal, data: bytes) -> None:
    """The placed file is the served one, owned by sduser; phoenix plan is converged offline."""
    path = f"{BAKED_ROOT}/models/loras/{LORA}"
    said = r.podman("exec", BAKED_CONTAINER, "sha256sum", path, check=False).stdout.split()
    want = hashlib.sha256(data).hexdigest()
    r.check("the baked LoRA is at the baked root with its SHA256", said[:1] == [want], path)
    plan = r.podman(
        "exec", "--user", "10001", BAKED_CONTAINER, "phoenix", "plan", "--detailed-exitcode",
        check=False,
    )  # fmt: skip
    r.check(
        "phoenix plan in the running baked container: converged (exit 0), offline",
        plan.returncode == 0,
        f"exit {plan.returncode}" + ("" if plan.returncode == 0 else ": " + plan.stdout[-800:]),
    )
    leftovers = r.podman(
        "exec", BAKED_CONTAINER, "find", BAKED_ROOT, "-name", "*.part", check=False
    ).stdout.split()
    r.check("no .part or staging leftovers in the baked root", not leftovers, " ".join(leftovers))


def _unbaked_start(r: Rehearsal, context: Path, hub: LoopbackHub) -> float:
    manifest = context / "manifest.yaml"
    context.chmod(0o755)
    manifest.chmod(0o644)
    argv = [
        "--network", "host",
        "--volume", f"{manifest}:/config/manifest.yaml:ro",
        "--env", "PHOENIX_MANIFEST=/config/manifest.yaml",
        "--env", f"CIVITAI_API_BASE={hub.api_base}",
        "--env", "CIVITAI_TOKEN",  # by name: the value comes from podman's env, not argv
        IMAGE,
    ]  # fmt: skip
    took = _cold_start(
        r, argv, CONTAINER, lambda: http_get("http://127.0.0.1:8189/readyz", 1)[0] == 200,
        env={**os.environ, "CIVITAI_TOKEN": r.build_token},
    )
    fetched = hub.bytes_sent()
    r.check(
        "the unbaked image fetches the same model at start",
        took >= 0 and fetched >= BAKED_MIB << 20,
        f"{took:.1f} s, {checks.human(fetched).strip()} fetched",
    )
    r.podman("stop", "--time", "10", CONTAINER, check=False)
    return took

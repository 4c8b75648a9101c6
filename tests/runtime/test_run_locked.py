"""``phoenix run --locked``: a baked image starts with its sources unreachable and asks none.

docker/Dockerfile.bake bakes with ``phoenix apply --locked`` and starts ``phoenix run
--locked``: the state the bake recorded is the locked desired state (each floating reference
pinned), and only a locked apply compares against that same state without resolving anything
(an unlocked ``phoenix apply`` on such a root asks the Civitai API for the floating id again).
A manifest changed since the lock stops before launch, exit 1.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.runtime.test_run_acceptance import _cli_env
from tests.support.civitai import LoopbackHub, add_style_lora
from tests.support.pod import Pod
from tests.support.servers import free_port

LORA_ID, VERSION_ID = 618692, 691639


def _manifest(pod: Pod, extra: str = "") -> Path:
    return pod.cli_manifest(f"  - civitai: {LORA_ID}\n    type: loras\n{extra}")


def _phoenix(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *argv],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _bake(pod: Pod, civitai: LoopbackHub) -> tuple[Path, dict[str, str]]:
    """Lock and apply --locked online (what the bake's RUN does); the env for later runs."""
    add_style_lora(civitai, LORA_ID, VERSION_ID)
    manifest = _manifest(pod)
    online = {**_cli_env(pod.home), "CIVITAI_API_BASE": civitai.api_base}
    for argv in (("lock",), ("apply", "--locked", "--root", str(pod.root))):
        done = _phoenix(*argv, "--manifest", str(manifest), env=online)
        assert done.returncode == 0, done.stdout + done.stderr
    civitai.reset()
    offline = {**_cli_env(pod.home), "CIVITAI_API_BASE": f"http://127.0.0.1:{free_port()}"}
    return manifest, offline


def _run(pod: Pod, manifest: Path, env: dict[str, str], *flags: str) -> None:
    argv = [sys.executable, "-m", "provisioner", "run", *flags, "--manifest", str(manifest),
            "--root", str(pod.root)]  # fmt: skip
    pod.proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip


def test_run_locked_on_a_baked_root_asks_no_source(pod_factory: Any, civitai: LoopbackHub) -> None:
    pod = pod_factory()
    manifest, offline = _bake(pod, civitai)
    _run(pod, manifest, offline, "--locked")
    status = pod.wait_ready(timeout=60)
    assert status["apply"]["progress"]["failed"] == 0, status["apply"]
    pod.signal(signal.SIGTERM)
    out = pod.finish()
    assert pod.proc is not None and pod.proc.returncode == 0, out
    assert civitai.records == []
    assert (pod.root / "models" / "loras" / "style.safetensors").is_file()


def test_a_manifest_changed_since_the_lock_stops_before_launch(
    pod_factory: Any, civitai: LoopbackHub
) -> None:
    pod = pod_factory()
    manifest, offline = _bake(pod, civitai)
    text = manifest.read_text()
    manifest.write_text(text + "  - civitai: 4242\n    type: loras\n")
    _run(pod, manifest, offline, "--locked")
    assert pod.proc is not None
    out = pod.finish(timeout=60)
    assert pod.proc.returncode == 1, out
    assert "changed since `phoenix lock`" in out and "run `phoenix lock` again" in out
    assert "Traceback" not in out
    assert civitai.records == []

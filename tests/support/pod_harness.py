"""Runs ``run_pod`` as a real process for the acceptance tests (``python pod_harness.py CFG``).

The runtime's own behaviour (signals, restarts, cleanup, flags, secrets) is tested through it
with the inputs under the test's control: the desired state comes straight from the JSON config
and the apply step is a small function that places files and reports results like ``apply_all``
(a required item can fail on cue, a download can take a minute). The real loader and the real
apply are exercised end to end through the ``phoenix run`` CLI in
``test_run_acceptance.py::test_phoenix_run_cli_applies_a_url_model_end_to_end``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.core.config import Versions, load_versions
from provisioner.core.layout import Layout
from provisioner.manifest.desired import DesiredState, Secrets
from provisioner.manifest.models import Manifest
from provisioner.plan.change import ItemResult
from provisioner.runtime.flags import InstalledFeatures
from provisioner.runtime.gpu import GpuFacts
from provisioner.runtime.probe import probe_features
from provisioner.runtime.run import run_pod
from provisioner.runtime.run_inputs import RunOptions
from provisioner.runtime.services import RestartPolicy

CFG: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())


@dataclass
class Report:
    results: list[ItemResult]
    remaining: list[str] = field(default_factory=list)


def load(manifest: str | None, env: dict[str, str]) -> tuple[DesiredState, Secrets]:
    desired = DesiredState(manifest=Manifest.model_validate(CFG["manifest"]))
    secrets = Secrets(
        hf_token=env.get("HUGGINGFACE_TOKEN") or env.get("HF_TOKEN"),
        civitai_token=env.get("CIVITAI_TOKEN"),
        fb_password=env.get("FB_PASSWORD"),
    )
    return desired, secrets


def apply(
    desired: DesiredState, layout: Layout, versions: Versions, secrets: Secrets, **kw: Any
) -> Report:
    results = []
    for item in CFG.get("items", []):
        time.sleep(item.get("sleep_s", 0))  # a long download
        if item["ok"]:
            target = layout.model_folder("loras") / item["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            # a careless writer would leak here; the token must not be in what we place
            target.write_bytes(b"weights for " + item["id"].encode())
        results.append(
            ItemResult(item["id"], "models", item["ok"], item.get("message", ""), item["required"])
        )
    return Report(results)


def fake_gpu() -> GpuFacts:
    """The one input that cannot be real here: an RTX 5090's NVML facts."""
    return GpuFacts("NVIDIA GeForce RTX 5090", (12, 0), 32 * 1024**3, "575.57.08", "12.9")


def torch_for_gpu(python: str, with_torch: bool) -> InstalledFeatures:
    """Real metadata probe; torch's arch list is the configured one (there is no torch here)."""
    found = probe_features(python, False)
    if not with_torch:
        return found
    time.sleep(CFG.get("torch_import_s", 0.0))
    return InstalledFeatures(
        torch="2.5.1+cu124", torch_cuda="12.4", torch_arch_list=tuple(CFG["torch_archs"])
    )


options = RunOptions(
    root=Path(CFG["root"]),
    health_host="127.0.0.1",
    health_port=CFG["health_port"],
    grace_s=CFG.get("grace_s", 10.0),
    stop_timeout_s=CFG.get("stop_timeout_s", 3.0),
    restart=RestartPolicy(**CFG.get("restart", {})),
    comfy_python=sys.executable,
    filebrowser_binary=CFG.get("filebrowser"),
    homes=[Path(CFG["home"])],
)
gpu_kw: dict[str, Any] = {}
if "torch_archs" in CFG:
    gpu_kw = {"read_gpu": fake_gpu, "probe": torch_for_gpu}
sys.exit(run_pod(options, load=load, apply=apply, versions=load_versions(), **gpu_kw))

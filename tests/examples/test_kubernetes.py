"""examples/kubernetes/: every manifest validates against the Kubernetes API schemas, the
kustomization renders, and what the manifests say about Phoenix agrees with Phoenix itself.

The validator is kubernetes-validate (PyPI), with the strict schemas of one pinned Kubernetes
version: an unknown field is an error there, as it is for ``kubectl apply --validate=strict``.
The cross-checks read Phoenix's own tables and run its own code (the env table, the health API
over HTTP, the manifest loader, ``phoenix validate``, the Dockerfile's user), never strings.
No cluster is involved: what a real cluster does with these objects is untested here
(examples/kubernetes/README.md says what that leaves).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from provisioner.commands.argtypes import seconds
from provisioner.core.layout import DEFAULT_ROOT
from provisioner.manifest.envmap import ENV_VARS
from provisioner.manifest.merge import load_desired
from provisioner.manifest.models import Manifest
from provisioner.runtime.health import HealthServer, StatusBoard
from tests.docker.test_dockerfile import INSTRUCTIONS
from tests.support.paths import REPO as ROOT
from tests.support.pod import http_get
from tests.support.servers import free_port

K8S = ROOT / "examples" / "kubernetes"
#: The Kubernetes API version the manifests are validated against (kubernetes-validate
#: 1.34.1 ships its schemas, strict and not, for 1.25 to 1.34).
KUBERNETES_VERSION = "1.34"

_yaml = YAML(typ="safe", pure=True)


def documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of ``path``, as plain dicts."""
    return [d for d in _yaml.load_all(path.read_text(encoding="utf-8")) if d]


def manifest_files() -> list[Path]:
    """The Kubernetes object files beside the kustomization."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def validate(doc: dict[str, Any]) -> str:
    """Validate one object strictly; returns the schema version used."""
    return str(kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True))


def the(kind: str) -> dict[str, Any]:
    """The one object of ``kind`` among the example's files."""
    found = [d for p in manifest_files() for d in documents(p) if d["kind"] == kind]
    assert len(found) == 1, (kind, len(found))
    return found[0]


def container() -> dict[str, Any]:
    """The Deployment's one container (there is no init container: see deployment.yaml)."""
    spec = the("Deployment")["spec"]["template"]["spec"]
    assert "initContainers" not in spec
    (main,) = spec["containers"]
    return dict(main)


def env_of(main: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in main["env"]}


def kustomization() -> dict[str, Any]:
    (doc,) = documents(K8S / "kustomization.yaml")
    return doc


@pytest.fixture(scope="module")
def configmap_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ConfigMap's manifest.yaml as a file, where PHOENIX_MANIFEST would find it."""
    path = tmp_path_factory.mktemp("configmap") / "manifest.yaml"
    path.write_text(the("ConfigMap")["data"]["manifest.yaml"], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def desired_manifest(configmap_manifest: Path) -> Manifest:
    """The ConfigMap's manifest through Phoenix's own loader (defaults filled in)."""
    desired, _ = load_desired(str(configmap_manifest), {})
    return desired.manifest


# --- schema validation ----------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_manifest_validates_against_the_kubernetes_schema(path: Path) -> None:
    docs = documents(path)
    assert docs, path
    for doc in docs:
        assert validate(doc) == KUBERNETES_VERSION, (path.name, doc["kind"])


def test_the_example_has_the_objects_it_needs() -> None:
    kinds = sorted(d["kind"] for p in manifest_files() for d in documents(p))
    assert kinds == ["ConfigMap", "Deployment", "Namespace", "PersistentVolumeClaim", "Service"]


def test_kustomization_resources_are_exactly_the_files_present() -> None:
    assert sorted(kustomization()["resources"]) == [p.name for p in manifest_files()]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["spec", "replicas"], "one"),  # integer expected
        (["spec", "template", "spec", "terminationGracePeriod"], 30),  # no such field
        (["spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"], "8188"),
        (["spec", "template", "spec", "containers", 0, "env", 0, "value"], 25),  # string expected
        (["spec", "template", "spec", "securityContext", "runAsNonRoot"], "yes"),
    ],
    ids=["replicas-string", "unknown-field", "port-string", "env-value-int", "bool-string"],
)
def test_the_validator_catches_a_broken_deployment(path: list[str | int], value: object) -> None:
    broken = copy.deepcopy(the("Deployment"))
    node: Any = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def test_the_validator_catches_a_missing_required_field() -> None:
    broken = copy.deepcopy(the("Deployment"))
    del broken["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError, match="selector"):
        validate(broken)


def _kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not on PATH: the kustomization is not rendered here")
    return found


def _kustomize(kubectl: str, folder: Path) -> subprocess.CompletedProcess[str]:
    # rendering is offline: no cluster, no kubeconfig
    env = {"PATH": os.environ["PATH"], "HOME": str(folder), "KUBECONFIG": os.devnull}
    return subprocess.run(
        [kubectl, "kustomize", str(folder)],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip


def rendered() -> Iterator[dict[str, Any]]:
    result = _kustomize(_kubectl(), K8S)
    assert result.returncode == 0, result.stderr
    yield from (d for d in _yaml.load_all(result.stdout) if d)


def test_the_rendered_kustomization_validates_and_rewrites_the_image() -> None:
    docs = list(rendered())
    assert sorted(d["kind"] for d in docs) == [
        "ConfigMap", "Deployment", "Namespace", "PersistentVolumeClaim", "Service"
    ]  # fmt: skip
    for doc in docs:
        assert validate(doc) == KUBERNETES_VERSION, doc["kind"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == kustomization()["namespace"], doc["kind"]
    (image,) = kustomization()["images"]
    (deployment,) = (d for d in docs if d["kind"] == "Deployment")
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    assert main["image"] == f"{image['newName']}:{image['newTag']}"


def test_kustomize_refuses_a_resource_that_is_not_there(tmp_path: Path) -> None:
    kubectl = _kubectl()
    folder = tmp_path / "k8s"
    shutil.copytree(K8S, folder)
    text = (folder / "kustomization.yaml").read_text(encoding="utf-8")
    (folder / "kustomization.yaml").write_text(
        text.replace("  - service.yaml\n", "  - service.yaml\n  - missing.yaml\n"), encoding="utf-8"
    )
    result = _kustomize(kubectl, folder)
    assert result.returncode != 0 and "missing.yaml" in result.stderr


# --- the manifests agree with Phoenix ------------------------------------------------------


def test_every_env_name_is_one_phoenix_reads() -> None:
    table = {v.name: v for v in ENV_VARS}
    env = env_of(container())
    assert set(env) <= set(table), set(env) - set(table)
    for name, entry in env.items():
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        # a secret only ever from the Secret, never as a literal value
        assert table[name].secret == (ref is not None), name
        if ref is not None:
            assert "value" not in entry
            assert ref == {"name": "phoenix-tokens", "key": name, "optional": True}, name


def test_every_secret_phoenix_reads_can_come_from_the_secret() -> None:
    secrets = {v.name for v in ENV_VARS if v.secret and v.alias_of is None}
    assert secrets == {"HUGGINGFACE_TOKEN", "CIVITAI_TOKEN", "FB_PASSWORD"}
    assert secrets <= set(env_of(container()))


def test_the_configmap_manifest_passes_phoenix_validate(configmap_manifest: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(configmap_manifest.parent),
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "provisioner", "validate", "--manifest", str(configmap_manifest)],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OK: {configmap_manifest} is valid: 3 model item(s)")


def test_the_configmap_manifest_is_the_lowvram_example() -> None:
    example = (ROOT / "examples" / "flux-fp8-lowvram.yaml").read_text(encoding="utf-8")
    schema_line, rest = example.split("\n", 1)
    assert schema_line.startswith("# yaml-language-server:")
    assert the("ConfigMap")["data"]["manifest.yaml"] == rest


def test_the_manifest_is_mounted_where_phoenix_manifest_points() -> None:
    main = container()
    wanted = Path(env_of(main)["PHOENIX_MANIFEST"]["value"])
    volumes = {v["name"]: v for v in the("Deployment")["spec"]["template"]["spec"]["volumes"]}
    mounts = [m for m in main["volumeMounts"] if "configMap" in volumes[m["name"]]]
    (mount,) = mounts
    assert "subPath" not in mount and mount["readOnly"] is True  # updates reach the file
    assert Path(mount["mountPath"]) == wanted.parent
    source = volumes[mount["name"]]["configMap"]
    assert source["name"] == the("ConfigMap")["metadata"]["name"]
    assert wanted.name in the("ConfigMap")["data"]


def test_the_claim_is_mounted_at_the_workspace_root(desired_manifest: Manifest) -> None:
    main = container()
    assert "PHOENIX_ROOT" not in env_of(main)  # so the root is the manifest's storage.root
    assert desired_manifest.storage.root == DEFAULT_ROOT
    volumes = {v["name"]: v for v in the("Deployment")["spec"]["template"]["spec"]["volumes"]}
    (mount,) = (m for m in main["volumeMounts"] if "persistentVolumeClaim" in volumes[m["name"]])
    assert mount["mountPath"] == desired_manifest.storage.root
    claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
    pvc = the("PersistentVolumeClaim")
    assert claim == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # many pods, one volume
    # the claim holds at least what Phoenix recommends free for FLUX (storage.min_free_gb)
    size = _bytes(pvc["spec"]["resources"]["requests"]["storage"])
    assert size >= desired_manifest.storage.min_free_gb * 10**9


def test_container_ports_are_phoenixs_ports(desired_manifest: Manifest) -> None:
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports == {
        "comfyui": desired_manifest.comfyui.port,
        "health": desired_manifest.services.health.port,
        "filebrowser": desired_manifest.services.filebrowser.port,
    }
    assert desired_manifest.comfyui.listen == "0.0.0.0"  # reachable through the Service
    exposed = {int(p) for i in INSTRUCTIONS if i.keyword == "EXPOSE" for p in i.args.split()}
    assert set(ports.values()) == exposed


def test_the_service_reaches_the_named_container_ports() -> None:
    service = the("Service")
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    for entry in service["spec"]["ports"]:
        assert entry["targetPort"] in ports, entry
        assert entry["port"] == ports[entry["targetPort"]]
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    template_labels = the("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= template_labels.items()
    selector = the("Deployment")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template_labels.items()


def test_probes_use_the_health_apis_routes_and_port(desired_manifest: Manifest) -> None:
    main = container()
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    probes = {k: main[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    for probe in probes.values():
        assert ports[probe["port"]] == desired_manifest.services.health.port
    assert probes["startupProbe"]["path"] == probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"

    # the real health API, mid-apply and with no ComfyUI answering: alive, not ready
    board = StatusBoard()
    board.set(phase="apply")
    server = HealthServer(board, "127.0.0.1", 0, f"http://127.0.0.1:{free_port()}/system_stats")
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert http_get(base + probes["livenessProbe"]["path"]) == (
            200, {"ok": True, "phase": "apply"}
        )  # fmt: skip
        assert http_get(base + probes["readinessProbe"]["path"]) == (
            503, {"ready": False, "phase": "apply"}
        )  # fmt: skip
    finally:
        server.stop()


def _dockerfile_ids() -> tuple[str, int, int]:
    (run,) = (i.args for i in INSTRUCTIONS if i.keyword == "RUN" and "useradd" in i.args)
    gid = re.search(r"groupadd\b.*?--gid (\d+) (\S+)", run)
    uid = re.search(r"useradd\b.*?--uid (\d+) --gid (\S+)", run)
    name = re.search(r"--shell \S+ (\S+)\s*$", run)
    assert gid and uid and name, run
    assert uid.group(2) == gid.group(2)  # the user's primary group is the group made above
    return name.group(1), int(uid.group(1)), int(gid.group(1))


def test_the_pod_runs_as_the_images_service_user(desired_manifest: Manifest) -> None:
    name, uid, gid = _dockerfile_ids()
    assert name == desired_manifest.security.user  # the user `phoenix run` would drop to
    pod = the("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (uid, gid, gid)
    assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}
    own = container()["securityContext"]
    assert own == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_the_container_runs_the_images_entry_point() -> None:
    main = container()
    assert "command" not in main and "args" not in main
    (entry,) = (i.args for i in INSTRUCTIONS if i.keyword == "ENTRYPOINT")
    (cmd,) = (i.args for i in INSTRUCTIONS if i.keyword == "CMD")
    assert json.loads(entry)[1:] == ["--", "phoenix"] and json.loads(cmd) == ["run"]
    (image,) = kustomization()["images"]
    assert main["image"] == image["name"]  # the name kustomize rewrites


def test_the_pods_grace_outlasts_phoenixs_stop() -> None:
    table = {v.name: v for v in ENV_VARS}
    spec = the("Deployment")["spec"]["template"]["spec"]
    pod_grace = spec["terminationGracePeriodSeconds"]
    # parsed as `phoenix run` parses it (commands/run.py: PHOENIX_STOP_GRACE → --grace)
    grace = seconds(env_of(container())["PHOENIX_STOP_GRACE"]["value"])
    default = seconds(str(table["PHOENIX_STOP_GRACE"].default))
    # Phoenix's stop (services, then cleanup) is boxed to end 0.5 s before `grace`; a service
    # ignoring SIGTERM is killed after min(5, grace / 2) s. The kubelet kills at pod_grace.
    assert grace > default  # more room for cleanup than docker's 10 s
    assert min(5.0, grace / 2) + 1.0 < grace - 0.5  # the stop timeout fits inside the box
    assert pod_grace - grace >= 5  # tini, the process exit and the kubelet: seconds of margin


def test_the_gpu_is_a_limit_and_shm_is_a_bounded_tmpfs() -> None:
    main = container()
    limits, requests = main["resources"]["limits"], main["resources"]["requests"]
    assert limits["nvidia.com/gpu"] == 1 and "nvidia.com/gpu" not in requests
    assert _bytes(requests["memory"]) <= _bytes(limits["memory"])
    volumes = {v["name"]: v for v in the("Deployment")["spec"]["template"]["spec"]["volumes"]}
    (shm,) = (m for m in main["volumeMounts"] if m["mountPath"] == "/dev/shm")
    tmpfs = volumes[shm["name"]]["emptyDir"]
    assert tmpfs["medium"] == "Memory"
    # a memory-backed emptyDir counts against the memory limit: keep it well inside
    assert _bytes(tmpfs["sizeLimit"]) <= _bytes(limits["memory"]) // 4


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "": 1}


def _bytes(quantity: str) -> int:
    """A Kubernetes quantity with a binary suffix (the only kind these manifests use)."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|)", quantity)
    assert match, quantity
    return int(match.group(1)) * _UNITS[match.group(2)]

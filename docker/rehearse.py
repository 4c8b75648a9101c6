#!/usr/bin/env python3
"""Build the Phoenix image from local inputs on a stand-in base, run it, and check it.

    sudo python3 docker/rehearse.py            # the whole rehearsal; exit 0 when all PASS

Needs root, buildah, podman, crun and mmdebstrap (Debian's packages), and reaches only the
package registries (Debian's archive for the base and the Dockerfile's apt step, the host's pip
index for wheels). Everything else is local: the stand-in base (Debian bookworm + CPU torch,
tagged with the NGC name from config/versions.conf), the fake ComfyUI (a local git repo,
fetched by commit), the fake FileBrowser (a local archive with its real SHA256), a PEP 503
wheel index, and a loopback model source. Images, containers and storage live in a private
store under the work folder (``--root``), so other users of buildah/podman are untouched and
the whole store is removed at the end (``--keep`` keeps it).

Phases print their time; each check prints ``PASS``/``FAIL``. docs/image.md lists what this
cannot show (CUDA, NGC's Python 3.12 layout, a GPU).

Reuse (e.g. a bake rehearsal): ``Rehearsal.build_image(target=..., tag=..., build_args=...)``
builds any stage of the Dockerfile with the same hermetic inputs, ``Rehearsal.start(...)``
runs it, and ``Rehearsal.check(name, ok, detail)`` records a result; ``--target`` and
``--build-arg`` do the same from the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rehearsal_checks as checks
import rehearsal_inputs as inputs

ROOT = inputs.ROOT
PREFIX = "phoenix-rehearsal-"
IMAGE = f"localhost/{PREFIX}image:latest"
CONTAINER = f"{PREFIX}run"
INPUTS_MOUNT = "/mnt/phoenix-inputs"
#: the stand-in's torch: the CPU build for CPython 3.11 that this machine kind's local wheel
#: folder holds (found by pip through its configured find-links); not NGC's 2.7.0a0 CUDA build
STANDIN_TORCH = "torch==2.13.0"
#: Debian packages of the stand-in: NGC has Python, pip, git, curl and CA certificates; tini is
#: left to the Dockerfile's apt step, which must install it on the real base too
STANDIN_PACKAGES = (
    "python3",
    "python3-pip",
    "python3-venv",
    "python-is-python3",
    "python3-setuptools",
    "python3-wheel",
    "git",
    "ca-certificates",
    "curl",
)
PORTS = (8188, 8080, 8189)


def versions() -> dict[str, str]:
    """config/versions.conf as a dict (KEY=VALUE lines; the parser Phoenix uses is stricter)."""
    found: dict[str, str] = {}
    for line in (ROOT / "config" / "versions.conf").read_text(encoding="utf-8").splitlines():
        key, sep, value = line.split("#", 1)[0].strip().partition("=")
        if sep:
            found[key.strip()] = value.strip()
    return found


def base_image_name() -> str:
    """The NGC base's name, as the Dockerfile's default BASE_IMAGE spells it."""
    return f"nvcr.io/nvidia/pytorch:{versions()['NGC_PYTORCH_TAG']}"


class Rehearsal:
    """One rehearsal: a private container store, the local inputs, results and phase times."""

    def __init__(self, work: Path, driver: str = "overlay") -> None:
        self.work = work
        self.store = [
            "--root",
            str(work / "storage"),
            "--runroot",
            str(work / "run"),
            "--storage-driver",
            driver,
        ]
        self.inputs = work / "inputs"
        self.results: list[tuple[str, bool, str]] = []
        self.phases: list[tuple[str, float]] = []
        self.build_args: dict[str, str] = {}
        #: secrets planted at build time and at run time; none may show up anywhere
        self.build_token = "hf_build" + secrets.token_hex(16)
        self.run_token = "hf_run" + secrets.token_hex(16)
        self.fb_password = "fbpw" + secrets.token_hex(12)

    # --- plumbing -------------------------------------------------------------------------
    def podman(
        self,
        *args: str,
        check: bool = True,
        capture: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        """podman with the private store and cgroupfs (no systemd needed)."""
        return self._run(
            [
                "podman",
                *self.store,
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--runtime",
                "runc",
                *args,
            ],
            check,
            capture,
            env,
            timeout,
        )

    def buildah(
        self,
        *args: str,
        check: bool = True,
        capture: bool = False,
        env: dict[str, str] | None = None,
        timeout: float = 1200,
    ) -> subprocess.CompletedProcess[str]:
        """buildah with the private store."""
        return self._run(["buildah", *self.store, *args], check, capture, env, timeout)

    @staticmethod
    def _run(
        argv: list[str], check: bool, capture: bool, env: dict[str, str] | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            argv, capture_output=capture, text=True, env=env, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout or "")[-3000:] if capture else ""
            raise RuntimeError(
                f"{argv[0]} {' '.join(argv[7:9])}... exited {proc.returncode}\n{detail}"
            )
        return proc

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a phase and print it."""
        print(f"==> {name}", flush=True)
        began = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - began
            self.phases.append((name, took))
            print(f"    {name}: {took:.1f} s", flush=True)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        """Record and print one check."""
        self.results.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)
        return ok

    # --- inputs ----------------------------------------------------------------------------
    def make_inputs(self) -> None:
        """Fake ComfyUI repo, fake FileBrowser archive, wheel index: the build's sources."""
        shutil.rmtree(self.inputs, ignore_errors=True)
        shutil.rmtree(self.work / "run-inputs", ignore_errors=True)
        self.inputs.mkdir(parents=True)
        commit = inputs.fake_comfyui_repo(self.inputs / "comfyui.git")
        fb_sha = inputs.fake_filebrowser_archive(self.inputs / "linux-amd64-filebrowser.tar.gz")
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        v = versions()
        pins = [
            f"{name}=={v[key]}"
            for name, key in (
                ("transformers", "TRANSFORMERS_VERSION"),
                ("huggingface-hub", "HUGGINGFACE_HUB_VERSION"),
                ("safetensors", "SAFETENSORS_VERSION"),
                ("nvidia-ml-py", "NVIDIA_ML_PY_VERSION"),
                ("pydantic", "PYDANTIC_VERSION"),
                ("ruamel.yaml", "RUAMEL_YAML_VERSION"),
            )
        ]
        wanted = [
            STANDIN_TORCH,
            *pyproject["project"]["dependencies"],
            *[
                r
                for r in inputs.FAKE_COMFYUI_REQUIREMENTS.split()
                if r not in ("torch", "torchaudio")
            ],
        ]
        wheels = inputs.download_wheels(self.inputs / "wheels", wanted, pins)
        torch = [w for w in wheels if inputs.project_of(w.name) == "torch"]
        if not torch or "+cpu" not in torch[0].name:
            raise RuntimeError(
                f"no CPU torch wheel for {STANDIN_TORCH} from pip: got {torch}; the "
                "stand-in base needs the local CPU build (see docs/image.md)"
            )
        projects = inputs.write_simple_index(self.inputs / "wheels", self.inputs / "simple")
        print(
            f"    {len(wheels)} wheels ({projects} projects), ComfyUI {commit[:12]}, "
            f"FileBrowser sha256 {fb_sha[:12]}"
        )
        self.build_args = {
            "COMFYUI_REPO": f"file://{INPUTS_MOUNT}/comfyui.git",
            "COMFYUI_COMMIT": commit,
            "FILEBROWSER_URL": f"file://{INPUTS_MOUNT}/linux-amd64-filebrowser.tar.gz",
            "FILEBROWSER_SHA256": fb_sha,
            "PIP_INDEX_URL": f"file://{INPUTS_MOUNT}/simple",
        }

    # --- base --------------------------------------------------------------------------------
    def build_base(self) -> str:
        """mmdebstrap a bookworm root with CPU torch, import it under the NGC base's name."""
        name = base_image_name()
        tarball = self.work / "standin-base.tar"
        wheels = self.inputs / "wheels"
        hooks = [
            f'mkdir -p "$1/tmp/wheels" && cp -a {wheels}/. "$1/tmp/wheels/"',
            'chroot "$1" python3 -m pip install --quiet --no-cache-dir --break-system-packages '
            f'--no-index --find-links /tmp/wheels "{STANDIN_TORCH}"',
            'rm -rf "$1/tmp/wheels" "$1/root/.cache"',
            # NGC installs into the system interpreter, which Debian marks externally managed
            'rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
            'chroot "$1" useradd --uid 1000 --user-group --create-home --shell /bin/bash ubuntu',
            # like NGC's: every installed distribution pinned (NGC's exact format unconfirmed)
            'mkdir -p "$1/etc/pip" && chroot "$1" python3 -m pip list --format=freeze '
            '--exclude pip --exclude setuptools --exclude wheel > "$1/etc/pip/constraint.txt"',
        ]
        argv = ["mmdebstrap", "--quiet", "--variant=apt", "--include=" + ",".join(STANDIN_PACKAGES)]
        argv += [f"--customize-hook={hook}" for hook in hooks]
        argv += ["bookworm", str(tarball)]
        self._run(argv, check=True, capture=True, env=None, timeout=1200)
        self.podman(
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            'CMD ["/bin/bash"]',
            "--message",
            "Phoenix rehearsal stand-in",
            str(tarball),
            name,
        )
        tarball.unlink()
        return name

    # --- image ------------------------------------------------------------------------------
    def build_image(
        self, tag: str = IMAGE, target: str | None = None, build_args: dict[str, str] | None = None
    ) -> None:
        """buildah bud the Dockerfile with the local inputs, a planted token in the env."""
        argv = [
            "bud",
            "--isolation",
            "chroot",
            "--pull=never",
            "--format",
            "docker",
            "--layers",
            "--volume",
            f"{self.inputs}:{INPUTS_MOUNT}:ro",
            "--tag",
            tag,
            "--file",
            "Dockerfile",
        ]
        for key, value in {**self.build_args, **(build_args or {})}.items():
            argv += ["--build-arg", f"{key}={value}"]
        if target:
            argv += ["--target", target]
        env = {
            **os.environ,
            "HUGGINGFACE_TOKEN": self.build_token,
            "HF_TOKEN": self.build_token,
            "CIVITAI_TOKEN": self.build_token,
        }
        proc = subprocess.run(
            ["buildah", *self.store, *argv, str(ROOT)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        log = self.work / f"build-{tag.rsplit('/', 1)[-1].split(':')[0]}.log"
        log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
        if proc.returncode != 0:
            raise RuntimeError(
                f"buildah bud exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}"
            )

    # --- run --------------------------------------------------------------------------------
    def start(
        self, manifest: Path, extra: Sequence[str] = (), image: str = IMAGE, name: str = CONTAINER
    ) -> None:
        """podman run the image detached, host network, the manifest mounted, tokens planted."""
        env = {**os.environ, "HUGGINGFACE_TOKEN": self.run_token, "FB_PASSWORD": self.fb_password}
        # --ulimit: podman's default RLIMIT_NOFILE/NPROC exceed what a sandboxed host may grant
        # (crun: "setrlimit: Operation not permitted"), so the host's own limits are passed;
        # --no-healthcheck: podman would schedule it with systemd timers; the check runs the
        # image's HEALTHCHECK command itself (read from the image config)
        self.podman(
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            "host",
            *host_ulimits(),
            "--no-healthcheck",
            "--volume",
            f"{manifest}:/config/manifest.yaml:ro",
            "--env",
            "PHOENIX_MANIFEST=/config/manifest.yaml",
            # by name: the values come from this process's env, never from argv
            "--env",
            "HUGGINGFACE_TOKEN",
            "--env",
            "FB_PASSWORD",
            *extra,
            image,
            env=env,
        )

    def running(self, name: str = CONTAINER) -> bool:
        """Whether the container still runs."""
        proc = self.podman("inspect", "--format", "{{.State.Running}}", name, check=False)
        return proc.stdout.strip() == "true"

    def exec_json(self, code: str, name: str = CONTAINER) -> dict[str, object]:
        """Run Python inside the container as root and parse the JSON it prints."""
        proc = self.podman("exec", name, "python3", "-c", code, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"exec in container failed: {proc.stderr[-2000:]}")
        result: dict[str, object] = json.loads(proc.stdout)
        return result

    def cleanup(self, images: bool = True) -> None:
        """Remove this rehearsal's containers (and images); unmount what it mounted."""
        self.podman("rm", "--force", "--all", check=False)
        if not images:
            return
        self.podman("rmi", "--force", "--all", check=False)
        self.buildah("rm", "--all", check=False, capture=True)
        storage = str(self.work)
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(storage)]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False)


#: Runs inside the container as root: facts about PID 1, Phoenix, the services and the files.
PROBE = r"""
import json, os, pwd
def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out
def cmd(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
def environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:
        return b""
procs = []
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            s = status(d)
            procs.append({"pid": int(d), "ppid": int(s["PPid"]), "uid": int(s["Uid"].split()[0]),
                          "umask": s.get("Umask"), "cmd": cmd(d), "env": environ(d)})
        except OSError:
            pass
def given(name):
    pairs = [e.split(b"=", 1) for e in environ(1).split(b"\0") if b"=" in e]
    return next((v for k, v in pairs if k == name), b"")
token, fbpw = given(b"HUGGINGFACE_TOKEN"), given(b"FB_PASSWORD")
for p in procs:
    leaked = any(s and s in p["env"] for s in (token, fbpw))
    p["secret_in_env"] = p["pid"] != 1 and leaked
    del p["env"]
me = os.getpid()
procs = [p for p in procs if p["pid"] != me and "python3 -c" not in p["cmd"]]
files = []
for dirpath, dirs, names in os.walk("/workspace"):
    for n in dirs + names:
        path = os.path.join(dirpath, n)
        st = os.lstat(path)
        files.append([path, st.st_mode, pwd.getpwuid(st.st_uid).pw_name])
st = os.stat("/workspace")
print(json.dumps({"procs": procs, "files": files, "token_seen": bool(token),
                  "workspace_owner": pwd.getpwuid(st.st_uid).pw_name}))
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def model_server(folder: Path) -> Iterator[int]:
    """Serve ``folder`` on 127.0.0.1 (a loopback model source); yields the port."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_Quiet, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def http_get(url: str, timeout: float = 3) -> tuple[int, str]:
    """(status, body) of a GET; (0, error) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except OSError as exc:
        return 0, str(exc)


def host_ulimits() -> list[str]:
    """``--ulimit`` options for open files and processes equal to this process's limits."""
    import resource

    # NPROC above kernel.pid_max was refused (EPERM) on this machine kind although the host's
    # own limit is higher; the cause is unconfirmed, pid_max is a cap no process can pass anyway
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text(encoding="ascii"))
    out: list[str] = []
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = (
            pid_max if v == resource.RLIM_INFINITY else v for v in resource.getrlimit(which)
        )
        if which == resource.RLIMIT_NPROC:
            soft, hard = min(soft, pid_max), min(hard, pid_max)
        out += ["--ulimit", f"{name}={soft}:{hard}"]
    return out


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    """Poll until ``predicate`` holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def ports_free(ports: Sequence[int]) -> list[int]:
    """Those of ``ports`` that something on this host already listens on."""
    import socket

    busy = []
    for port in ports:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


def run_checks(r: Rehearsal, manifest_dir: Path) -> None:
    """Start the container and run every check of the rehearsal against it."""
    tokens = [t.encode() for t in (r.build_token, r.run_token, r.fb_password)]
    model = manifest_dir / "models" / "rehearsal-tiny.safetensors"
    sha = inputs.model_file(model)
    with model_server(model.parent) as port:
        manifest = manifest_dir / "manifest.yaml"
        manifest.write_text(
            inputs.manifest_text(
                r.build_args["COMFYUI_REPO"],
                r.build_args["COMFYUI_COMMIT"],
                f"http://127.0.0.1:{port}/{model.name}",
                sha,
            ),
            encoding="utf-8",
        )
        manifest.chmod(0o644)
        manifest_dir.chmod(0o755)
        with r.phase("run: start to ready"):
            r.start(manifest)
            ready = (
                wait_for(
                    lambda: http_get("http://127.0.0.1:8189/readyz")[0] == 200 or not r.running(),
                    240,
                )
                and r.running()
            )
        logs = r.podman("logs", CONTAINER, check=False).stdout
        r.check(
            "phoenix run converges: /readyz answers 200",
            ready,
            "" if ready else "not ready in 240 s; log tail:\n" + logs[-3000:],
        )
        with r.phase("run: checks while running"):
            code, body = http_get("http://127.0.0.1:8188/system_stats")
            r.check(
                "ComfyUI (fake) answers on 8188",
                code == 200 and "0.0.0-fake" in body,
                f"HTTP {code}",
            )
            # /readyz asks ComfyUI itself; /status's phase follows the supervisor's own probe,
            # which may lag by a poll interval
            seen: dict[str, object] = {}

            def status_ready() -> bool:
                code, body = http_get("http://127.0.0.1:8189/status")
                try:
                    seen.update(code=code, doc=json.loads(body))
                except ValueError:
                    seen.update(code=code, doc={})
                return code == 200 and seen["doc"].get("phase") == "ready"  # type: ignore[union-attr]

            began = time.monotonic()
            ok = wait_for(status_ready, 15)
            r.check(
                "/status answers JSON, phase ready",
                ok,
                f"HTTP {seen.get('code')}, phase {seen['doc'].get('phase')!r} "  # type: ignore[union-attr]
                f"{time.monotonic() - began:.1f} s after /readyz",
            )
            inspect = json.loads(r.podman("image", "inspect", IMAGE).stdout)[0]
            test = (inspect.get("Healthcheck") or {}).get("Test") or []
            argv = (
                test[1:]
                if test[:1] == ["CMD"]
                else (["sh", "-c", test[1]] if test[:1] == ["CMD-SHELL"] else [])
            )
            hc = r.podman("exec", CONTAINER, *argv, check=False) if argv else None
            r.check(
                "the image's own HEALTHCHECK command passes",
                bool(hc) and hc.returncode == 0,  # type: ignore[union-attr]
                " ".join(argv) or "no HEALTHCHECK in the image config",
            )
            facts = r.exec_json(PROBE)
            procs = facts["procs"]  # type: ignore[assignment]
            pid1 = next((p for p in procs if p["pid"] == 1), {})  # type: ignore[union-attr]
            phx = [
                p for p in procs if p["ppid"] == 1 and " run" in p["cmd"] and "phoenix" in p["cmd"]
            ]  # type: ignore[union-attr]
            r.check(
                "PID 1 is tini, phoenix run its child",
                "tini" in pid1.get("cmd", "") and len(phx) == 1,
                f"PID 1: {pid1.get('cmd')!r}; phoenix: {[p['cmd'] for p in phx]}",
            )
            sd = 10001
            comfy = [p for p in procs if "main.py" in p["cmd"]]  # type: ignore[union-attr]
            fb = [p for p in procs if "filebrowser" in p["cmd"]]  # type: ignore[union-attr]
            dropped = (
                bool(phx)
                and phx[0]["uid"] == sd
                and bool(comfy)
                and all(p["uid"] == sd for p in comfy + fb)
            )
            r.check(
                "phoenix run, ComfyUI and FileBrowser run as sduser (uid 10001)",
                dropped,
                f"phoenix {[p['uid'] for p in phx]}, comfyui {[p['uid'] for p in comfy]}, "
                f"filebrowser {[p['uid'] for p in fb]}",
            )
            r.check(
                "umask 077 in phoenix run and its services",
                bool(phx) and all(p["umask"] == "0077" for p in phx + comfy + fb),
                f"{sorted({p['umask'] for p in phx + comfy + fb})}",
            )
            leaked = [p["cmd"][:60] for p in procs if p["secret_in_env"]]  # type: ignore[union-attr]
            r.check(
                "no token or password in a service's environment",
                bool(facts["token_seen"]) and not leaked,
                ", ".join(leaked),
            )
            files = facts["files"]  # type: ignore[assignment]
            owners = {f[2] for f in files}  # type: ignore[union-attr]
            r.check(
                "/workspace and Phoenix's state owned by sduser",
                facts["workspace_owner"] == "sduser" and owners == {"sduser"},
                f"/workspace {facts['workspace_owner']}, files {sorted(owners)}",
            )
            loose = checks.group_or_world_accessible((f[0], f[1]) for f in files)  # type: ignore[union-attr]
            r.check(
                "what services wrote under /workspace has mode go-rwx (umask 077)",
                not loose,
                ", ".join(loose[:8]),
            )
            placed = [f[0] for f in files if f[0].endswith("/" + model.name)]  # type: ignore[union-attr]
            got = (
                r.podman("exec", CONTAINER, "sha256sum", *placed, check=False).stdout
                if placed
                else ""
            )
            r.check(
                "the model from the loopback source is placed and verified",
                len(placed) == 1 and sha in got,
                ", ".join(placed) or "not placed",
            )
        with r.phase("run: podman stop -t 10"):
            began = time.monotonic()
            r.podman("stop", "--time", "10", CONTAINER)
            took = time.monotonic() - began
        state = json.loads(r.podman("inspect", CONTAINER).stdout)[0]["State"]
        logs = r.podman("logs", CONTAINER, check=False)
        text = logs.stdout + logs.stderr
        (r.work / "container.log").write_text(text, encoding="utf-8")
        r.check(
            "podman stop -t 10: exit 0 well under 10 s",
            state.get("ExitCode") == 0 and took < 8,
            f"exit {state.get('ExitCode')} in {took:.1f} s",
        )
        r.check(
            "cleanup ran (its summary line is logged)",
            "cleanup: removed" in text,
            next((ln for ln in text.splitlines() if "cleanup:" in ln), "no cleanup line"),
        )
        with r.phase("run: container files and logs"):
            changed = r.podman("diff", "--format", "json", CONTAINER).stdout
            mount = Path(r.podman("mount", CONTAINER).stdout.strip())
            try:
                listed = json.loads(changed)
                paths = sorted(set(listed.get("changed", []) + listed.get("added", [])))
                leftovers = [
                    p
                    for p in paths
                    if p.startswith("/workspace/.phoenix/staging/")
                    or p.startswith("/workspace/.phoenix/run/")
                ]
                r.check(
                    "cleanup: no staging or run files left", not leftovers, ", ".join(leftovers[:5])
                )
                pyc = [p for p in paths if p.endswith((".pyc", ".pyo")) or "__pycache__" in p]
                r.check("nothing wrote bytecode at run time", not pyc, ", ".join(pyc[:5]))
                files = [mount / p.lstrip("/") for p in paths]
                hits = checks.secrets_in_files(files, tokens)
                r.check(
                    "no token or password in any file the container wrote (/workspace included)",
                    not hits,
                    ", ".join(sorted(hits)[:5]),
                )
            finally:
                r.podman("unmount", CONTAINER, check=False)
            found = checks.contains_any(__import__("io").BytesIO(text.encode()), tokens)
            r.check("no token or password in the container's log", not found)


def inspect_image(r: Rehearsal, base: str) -> None:
    """Layers, sizes, secrets in every layer, caches, bytecode and build tools in the image."""
    tokens = [t.encode() for t in (r.build_token, r.run_token, r.fb_password)]
    with r.phase("image: save and scan layers"):
        archive = r.work / "image.tar"
        r.podman("save", "--format", "docker-archive", "--output", str(archive), IMAGE)
        layers = checks.layers_of_archive(archive)
        print(f"    {'size':>12}  instruction")
        for layer in layers:
            print(f"    {checks.human(layer.size)}  {layer.created_by[:100]}")
        total = sum(layer.size for layer in layers)
        print(f"    {checks.human(total)}  image ({len(layers)} layers)")
        hits = checks.secrets_in_archive(archive, tokens)
        r.check(
            "no planted token (build env or run time) in any layer or the image config",
            not hits,
            ", ".join(sorted(hits)[:5]),
        )
        archive.unlink()
    with r.phase("image: files"):
        root = Path(r.podman("image", "mount", IMAGE).stdout.strip())
        base_root = Path(r.podman("image", "mount", base).stdout.strip())
        try:
            caches = checks.caches_in(root)
            r.check(
                "no pip/uv caches, apt lists or temp files in the image",
                not caches,
                ", ".join(caches),
            )
            stray = checks.stray_pyc(root)
            compiled = list((root / "opt/phoenix/provisioner/__pycache__").glob("*.pyc"))
            r.check(
                "no stray .pyc; Phoenix compiled at build time",
                not stray and bool(compiled),
                ", ".join(stray[:5]) or f"{len(compiled)} .pyc in provisioner/__pycache__",
            )
            tools = checks.build_tools_added(root, base_root)
            leftovers = [
                p for p in ("opt/phoenix-build", "tmp/filebrowser.tar.gz") if (root / p).exists()
            ]
            r.check(
                "no build tools or build scaffolding left beyond the base",
                not tools and not leftovers,
                ", ".join(tools + leftovers),
            )
        finally:
            r.podman("image", "unmount", IMAGE, check=False)
            r.podman("image", "unmount", base, check=False)


def verification_holds(r: Rehearsal) -> None:
    """A wrong FileBrowser SHA256 or a ComfyUI commit the repo lacks must fail the build."""
    wrong = {
        "a wrong FILEBROWSER_SHA256 fails the build": ({"FILEBROWSER_SHA256": "0" * 64}, "FAILED"),
        "a COMFYUI_COMMIT the repository lacks fails the build": (
            {"COMFYUI_COMMIT": "1" * 40},
            "fatal:",
        ),
    }
    for name, (args, marker) in wrong.items():
        try:
            r.build_image(tag=f"localhost/{PREFIX}must-fail:latest", build_args=args)
        except RuntimeError as exc:
            said = [ln for ln in str(exc).splitlines() if marker in ln]
            r.check(name, bool(said), said[0].strip() if said else str(exc)[-300:])
        else:
            r.check(name, False, "the build succeeded")
    r.podman("rmi", "--force", f"localhost/{PREFIX}must-fail:latest", check=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="work folder (default: a new one in /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and its store")
    parser.add_argument("--storage-driver", default="overlay", choices=("overlay", "vfs"))
    parser.add_argument("--target", help="build this Dockerfile stage (default: the last)")
    parser.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--bake",
        action="store_true",
        help="then bake a model into the image (docker/Dockerfile.bake) and start it offline",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print(
            "rehearse: run as root (buildah/podman with a private store need it)", file=sys.stderr
        )
        return 1
    # runc, not crun: crun 1.8 refuses hybrid cgroups with a controller on the v2 hierarchy
    # ("cgroups in hybrid mode not supported"), which this machine kind has (hugetlb)
    missing = [t for t in ("buildah", "podman", "mmdebstrap", "runc") if shutil.which(t) is None]
    if missing:
        print(
            f"rehearse: missing {', '.join(missing)}: apt-get install {' '.join(missing)}",
            file=sys.stderr,
        )
        return 1
    busy = ports_free(PORTS)
    if busy:
        print(
            f"rehearse: ports {busy} are in use on 127.0.0.1; the container uses the host network",
            file=sys.stderr,
        )
        return 1
    work = args.work or Path(tempfile.mkdtemp(prefix=PREFIX, dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    r = Rehearsal(work.resolve(), args.storage_driver)
    began = time.monotonic()
    try:
        with r.phase("inputs: fake ComfyUI repo, FileBrowser archive, wheel index"):
            r.make_inputs()
        with r.phase("base: stand-in from Debian bookworm + CPU torch"):
            base = base_image_name()
            if args.keep and r.podman("image", "exists", base, check=False).returncode == 0:
                print(f"    {base} kept from an earlier --keep run")
            else:
                base = r.build_base()
        extra = dict(kv.split("=", 1) for kv in args.build_arg)
        with r.phase("image: buildah bud (planted token in the build's environment)"):
            r.build_image(target=args.target, build_args=extra)
        r.check("image builds from local inputs only, on the stand-in base", True, f"base {base}")
        with r.phase("image: the overridden sources are still verified"):
            verification_holds(r)
        run_checks(r, work / "run-inputs")
        # after the run, so the run-time token was planted before the layers are searched
        inspect_image(r, base)
        if args.bake:
            import rehearse_bake  # the bake rehearsal (docker/rehearse_bake.py)

            rehearse_bake.run_bake(r)
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
        r.check("rehearsal ran to the end", False, f"{type(exc).__name__}: {exc}")
    finally:
        with r.phase("cleanup"):
            r.cleanup(images=not args.keep)
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    failed = [name for name, ok, _ in r.results if not ok]
    print("phases: " + "; ".join(f"{n.split(' (')[0]} {t:.0f} s" for n, t in r.phases))
    print(
        f"rehearsal: {len(r.results) - len(failed)} passed, {len(failed)} failed "
        f"in {time.monotonic() - began:.0f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

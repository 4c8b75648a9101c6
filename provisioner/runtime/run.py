"""``phoenix run``: system setup → apply → launch → wait → stop → cleanup → exit code.

The container's main process (under tini as PID 1). Exit codes: 0 after SIGTERM and a clean
stop, 130 after SIGINT, 1 when a required item failed, the GPU and torch do not fit, or a
service failed past its restart budget.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

from provisioner import __version__
from provisioner.core.config import Versions, load_versions
from provisioner.core.errors import PhoenixError, ServiceError
from provisioner.core.fsio import atomic_write_text
from provisioner.core.layout import Layout
from provisioner.core.redact import redact, register_secret
from provisioner.manifest.desired import DesiredState, Secrets
from provisioner.manifest.models import MODEL_FOLDERS, ComfyUIConfig, Manifest
from provisioner.plan.change import ItemResult
from provisioner.runtime import cleanup, filebrowser, storage, system
from provisioner.runtime.cliargs import CliSpec, filter_args, load_cli_spec
from provisioner.runtime.flags import FlagChoice, InstalledFeatures, choose_flags
from provisioner.runtime.gpu import GpuFacts, check_arch, read_gpu_facts
from provisioner.runtime.health import HealthServer, StatusBoard
from provisioner.runtime.probe import comfyui_version, git_head, probe_features
from provisioner.runtime.services import RestartPolicy, ServiceSpec, Supervisor

log = logging.getLogger("phoenix.run")

EXIT_OK, EXIT_INTERRUPTED = 0, 130


class ApplyReportLike(Protocol):
    """What Phoenix needs from ``provisioner.apply.apply_all``'s report."""

    @property
    def results(self) -> Sequence[ItemResult]: ...


ApplyFn = Callable[..., ApplyReportLike]
LoadFn = Callable[[str | None, dict[str, str]], tuple[DesiredState, Secrets]]


def default_apply(
    desired: DesiredState, layout: Layout, versions: Versions, secrets: Secrets, **kw: Any
) -> ApplyReportLike:
    """``provisioner.apply.apply_all``, imported when first needed."""
    from provisioner.apply import apply_all

    report: ApplyReportLike = apply_all(desired, layout, versions, secrets, **kw)
    return report


def default_load(manifest: str | None, env: dict[str, str]) -> tuple[DesiredState, Secrets]:
    """``provisioner.manifest.merge.load_desired``, imported when first needed."""
    from provisioner.manifest.merge import load_desired

    return load_desired(manifest, env)


def default_comfy_python(layout: Layout) -> str:
    """ComfyUI's interpreter: the workspace venv's (imported when first needed)."""
    from provisioner.plan.comfyui import comfy_python

    return str(comfy_python(layout))


def homes_to_clean(
    given: Sequence[Path] | None, environ: Mapping[str, str], users: Sequence[str]
) -> list[Path]:
    """Homes whose histories and caches ``run`` removes: the given ones; else, inside the
    Phoenix image, ``$HOME`` and the service user's; elsewhere none (a developer's machine)."""
    if given is not None:
        return list(given)
    if not cleanup.in_phoenix_image(environ):
        return []
    return system.default_homes(users)


@dataclass
class RunOptions:
    """Inputs of one ``phoenix run`` beyond the manifest."""

    root: Path | None = None
    manifest: str | None = None
    health_host: str = "0.0.0.0"
    health_port: int | None = None
    skip_apply: bool = False
    jobs: int = 4
    #: the container's stop grace period: stopping and cleanup must fit in it
    grace_s: float = 10.0
    stop_timeout_s: float = 5.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    comfy_python: str | None = None
    filebrowser_binary: str | None = None
    homes: Sequence[Path] | None = None


class PlanLike(Protocol):
    """What Phoenix needs from ``provisioner.plan.build.build_plan``'s plan."""

    def digest(self) -> str: ...

    def download_bytes(self) -> tuple[int, int]: ...


PlanFn = Callable[[DesiredState, Layout, Versions], PlanLike]


def default_plan(desired: DesiredState, layout: Layout, versions: Versions) -> PlanLike:
    """``provisioner.plan.build.build_plan`` (read-only observe + diff)."""
    from provisioner.plan.build import build_plan

    return build_plan(desired, layout, versions)


def choose_storage(
    options: RunOptions, manifest: Manifest, env: Mapping[str, str], needed: int
) -> storage.StorageReport:
    """The storage mode and root for this pod, with space warnings for ``needed`` bytes."""
    root = options.root or Path(manifest.storage.root)
    return storage.assess_storage(
        manifest.storage.mode,
        None,  # USE_VOLUME is already merged into storage.mode
        storage.read_mount_facts(root),
        storage.free_bytes(root),
        needed,
        manifest.storage.min_free_gb,
        root_explicit=options.root is not None,
    )


def directory_args(layout: Layout, spec: CliSpec | None) -> tuple[list[str], str | None]:
    """Point ComfyUI at the workspace: ``--base-directory``, or older per-folder options.

    Returns the args and, for checkouts without ``--base-directory``, the text of an
    ``extra_model_paths.yaml`` that maps the models and custom nodes folders.
    """
    if spec is None or "--base-directory" in spec:
        return ["--base-directory", str(layout.root)], None
    args: list[str] = []
    for option, path in (
        ("--output-directory", layout.output),
        ("--input-directory", layout.input),
        ("--user-directory", layout.user),
    ):
        if option in spec:
            args += [option, str(path)]
    lines = ["phoenix:", f"  base_path: {layout.root}"]
    lines += [f"  {folder}: models/{folder}" for folder in MODEL_FOLDERS]
    lines.append("  custom_nodes: custom_nodes")
    return args, "\n".join(lines) + "\n"


class _Stop:
    """Which signal asked us to stop, set from the signal handler."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.at: float | None = None
        #: while apply runs, a signal interrupts it (its transfers cancel, partials stay staged)
        self.interrupt_apply = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum, self.at = signum, time.monotonic()
        self.event.set()
        if self.interrupt_apply:
            self.interrupt_apply = False
            raise KeyboardInterrupt


class _StopRequested(Exception):
    """A signal arrived before ComfyUI was launched: skip ahead to stop and cleanup."""


def _say(out: IO[str], text: str) -> None:
    out.write(f"phoenix: {text}\n")
    out.flush()


def _versions(
    gpu: GpuFacts | None,
    features: InstalledFeatures,
    checkout: Path,
    fb_version: str | None,
) -> dict[str, Any]:
    return {
        "phoenix": __version__,
        "comfyui_version": comfyui_version(checkout),
        "comfyui_commit": git_head(checkout),
        "python": features.python,
        "torch": features.torch,
        "driver": gpu.driver_version if gpu else None,
        "cuda_driver": gpu.cuda_driver_version if gpu else None,
        "gpu": gpu.name if gpu else None,
        "filebrowser": fb_version,
    }


def _prepare_root(layout: Layout) -> None:
    for path in (
        layout.root,
        layout.models,
        layout.custom_nodes,
        layout.input,
        layout.output,
        layout.user,
        layout.phoenix,
        layout.logs,
        layout.staging,
        layout.phoenix / "run",
    ):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)


def run_pod(
    options: RunOptions,
    env: MutableMapping[str, str] | None = None,
    *,
    load: LoadFn = default_load,
    apply: ApplyFn = default_apply,
    versions: Versions | None = None,
    plan_fn: PlanFn = default_plan,
    read_gpu: Callable[[], GpuFacts | None] = read_gpu_facts,
    probe: Callable[[str, bool], InstalledFeatures] = probe_features,
    out: IO[str] | None = None,
) -> int:
    """Run the pod until a signal or a failure; returns the exit code (see module doc)."""
    console = out if out is not None else sys.stdout
    environ = os.environ if env is None else env
    stop = _Stop()
    old_handlers = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    began = time.monotonic()
    board = StatusBoard()
    board.update_versions(cuda=None)  # torch's CUDA: filled in by the torch check on a GPU
    health: HealthServer | None = None
    supervisor: Supervisor | None = None
    layout: Layout | None = None
    mode = "ephemeral"
    paranoid = False
    code = EXIT_OK
    try:
        # 1. system setup: hardening first, then secrets out of the environment
        os.umask(0o077)  # before anything is written; harden() below does the rest
        snapshot = dict(environ)
        desired, secrets = load(options.manifest, snapshot)
        del snapshot
        board.mark("loaded", began)
        user = desired.manifest.security.user
        system.harden(environ, homes_to_clean(options.homes, environ, [user]))
        for value in (secrets.hf_token, secrets.civitai_token, secrets.fb_password):
            register_secret(value)
        removed = system.scrub_secret_env(environ)
        _say(console, f"hardened: core dumps off, umask 077; secrets read from {removed or 'none'}")
        manifest = desired.manifest
        paranoid = manifest.security.paranoid
        board.set(phase="setup")
        for warning in desired.warnings:
            board.warn(warning)

        # storage mode and root; the plan (read-only) gives its hash and the bytes to fetch
        report = choose_storage(options, manifest, environ, 0)
        layout = Layout(report.root)
        _prepare_root(layout)
        # for `scripts/service_manager.sh stop`; .phoenix/run/ is removed at cleanup
        atomic_write_text(layout.phoenix / "run" / "phoenix.pid", f"{os.getpid()}\n")
        if versions is None:
            versions = load_versions()
        plan = plan_fn(desired, layout, versions)
        needed, unknown = plan.download_bytes()
        board.set(plan_hash=plan.digest())
        if needed:
            report = choose_storage(options, manifest, environ, needed)
        if unknown:
            board.warn(f"{unknown} download(s) of unknown size are not in the space check")
        mode = report.mode
        board.set(storage=report.to_json())
        _say(console, f"storage: {report.mode} at {report.root} ({report.reason})")
        for warning in report.warnings:
            log.warning("storage: %s", warning)
            board.warn(warning)

        # health API from here on, so a person can watch apply
        health_port = options.health_port or manifest.services.health.port
        comfy_port = manifest.comfyui.port
        if manifest.services.health.enabled:
            try:
                server = HealthServer(
                    board,
                    options.health_host,
                    health_port,
                    f"http://127.0.0.1:{comfy_port}/system_stats",
                )
            except OSError as exc:
                raise ServiceError(
                    f"the health API cannot listen on {options.health_host}:{health_port}: "
                    f"{exc.strerror or exc}",
                    where="--health-port" if options.health_port else "services.health.port",
                    hint="choose a free port, or stop what is using it",
                ) from exc
            health = server.start()
            _say(console, f"health API on :{health.port} (/healthz /readyz /status)")

        # drop root for everything else
        decision = system.decide_privileges(
            os.geteuid(), manifest.security.user, system.lookup_user(manifest.security.user)
        )
        _say(console, decision.reason)
        for warning in decision.warnings:
            board.warn(warning)
        system.drop_privileges(decision, [layout.root], environ)

        # GPU facts and the torch check
        checkout = Path(manifest.comfyui.path)
        gpu = read_gpu()
        if gpu is None:
            board.warn("no NVIDIA GPU visible: ComfyUI runs on the CPU (slow)")
        python = options.comfy_python or default_comfy_python(layout)
        features = probe(python, False)
        # importing torch takes seconds: check its architectures while apply/launch go on
        torch_check = TorchCheck(probe, python, gpu).start() if gpu is not None else None

        # 2. apply
        if not options.skip_apply:
            board.set(phase="apply")
            try:
                stop.interrupt_apply = not stop.event.is_set()
                if stop.event.is_set():
                    raise _StopRequested
                result = apply(desired, layout, versions, secrets, jobs=options.jobs)
            except KeyboardInterrupt:
                raise _StopRequested from None
            finally:
                stop.interrupt_apply = False
            if stop.event.is_set():
                raise _StopRequested
            results = list(result.results)
            board.record_results(results, len(getattr(result, "remaining", ())))
            failed = [r for r in results if not r.ok]
            for item in failed:
                level = "required" if item.required else "optional"
                board.warn(f"apply: {level} item {item.id} failed: {item.message}")
                _say(console, f"apply: {level} item {item.id} failed: {item.message}")
            if any(r.required for r in failed):
                names = ", ".join(r.id for r in failed if r.required)
                raise PhoenixError(
                    f"required item(s) failed: {names}; ComfyUI is not started",
                    where="phoenix run",
                    hint="see the messages above and /status; fix the item or set required: false",
                )
        fb_password = secrets.fb_password
        del secrets

        board.mark("applied", began)

        # 3. flags and services (not launched at all when the torch check already failed)
        if torch_check is not None and torch_check.finished():
            _torch_verdict(torch_check, board, console)
            torch_check = None
        extra_file = layout.phoenix / "run" / "extra_model_paths.yaml"
        launch = launch_args(
            gpu, features, manifest.comfyui, layout, load_cli_spec(checkout), extra_file
        )
        if launch.extra_paths_yaml is not None:
            atomic_write_text(extra_file, launch.extra_paths_yaml)
        for warning in launch.warnings:
            board.warn(warning)
            log.warning("%s", warning)
        choice, args = launch.choice, list(launch.args)
        reasons = [{"flag": r.flag, "reason": r.reason} for r in choice.reasons]
        board.set(flags=args, flag_reasons=reasons)
        _say(console, "ComfyUI flags: " + " ".join(args))
        for r in choice.reasons:
            _say(console, f"  {r.flag or '(none)'}: {r.reason}")

        specs = [
            ServiceSpec(
                name="comfyui",
                argv=(python, str(checkout / "main.py"), *args),
                env=system.service_env(environ, {"PYTHONUNBUFFERED": "1"}),
                cwd=str(checkout),
                probe_url=f"http://127.0.0.1:{comfy_port}/system_stats",
                restart=options.restart,
                stop_timeout=options.stop_timeout_s,
            )
        ]
        fb_spec, fb_version = _filebrowser(
            options, manifest, layout, fb_password, environ, board, console
        )
        if fb_spec is not None:
            specs.append(fb_spec)
        board.update_versions(**_versions(gpu, features, checkout, fb_version))

        if stop.event.is_set():
            raise _StopRequested
        supervisor = Supervisor(specs, layout.logs, echo=console)
        board.set(services=supervisor.snapshot, phase="starting", gate="comfyui")
        supervisor.start()
        board.mark("launched", began)

        # 4. wait for a signal, a failed torch check, or a service past its budget
        _supervise(supervisor, stop, board, torch_check, console, began, comfy_port, layout)
        code = EXIT_INTERRUPTED if stop.signum == signal.SIGINT else EXIT_OK
        _say(console, f"received {signal.Signals(stop.signum or signal.SIGTERM).name}: stopping")
    except _StopRequested:
        code = EXIT_INTERRUPTED if stop.signum == signal.SIGINT else EXIT_OK
        _say(console, "stop requested before ComfyUI was launched: stopping")
    except PhoenixError as exc:
        board.set(phase="failed")
        board.error(exc.render())
        console.write(f"phoenix: error: {redact(exc.render())}\n")
        code = exc.exit_code
    finally:
        code = _shutdown(options, board, supervisor, layout, mode, paranoid, stop, console, code)
        if health is not None:
            health.stop()
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)
    return code


class TorchCheck:
    """Imports torch in ComfyUI's interpreter in a thread and keeps what it reports."""

    def __init__(
        self, probe: Callable[[str, bool], InstalledFeatures], python: str, gpu: GpuFacts
    ) -> None:
        self.gpu = gpu
        self.result: InstalledFeatures | None = None
        self.thread = threading.Thread(
            target=lambda: setattr(self, "result", probe(python, True)),
            name="torch-check",
            daemon=True,
        )

    def start(self) -> TorchCheck:
        """Begin in the background; returns self."""
        self.thread.start()
        return self

    def finished(self) -> bool:
        """True once the probe returned."""
        return not self.thread.is_alive()


def _torch_verdict(check: TorchCheck, board: StatusBoard, console: IO[str]) -> None:
    """Record torch's versions; raise :class:`GPUError` when it has no kernels for the GPU."""
    result = check.result or InstalledFeatures()
    board.update_versions(torch=result.torch, cuda=result.torch_cuda)
    if result.torch_arch_list is None:
        board.warn("torch could not be imported in ComfyUI's interpreter: GPU check skipped")
        return
    check_arch(check.gpu, result.torch_arch_list)
    _say(console, f"torch {result.torch} (CUDA {result.torch_cuda}) has kernels for {check.gpu.sm}")


@dataclass(frozen=True)
class LaunchArgs:
    """ComfyUI's final arguments, the flag choice behind them, and what was dropped."""

    choice: FlagChoice
    args: tuple[str, ...]
    dropped: tuple[str, ...]
    warnings: tuple[str, ...]
    extra_paths_yaml: str | None = None


def launch_args(
    gpu: GpuFacts | None,
    features: InstalledFeatures,
    comfy: ComfyUIConfig,
    layout: Layout,
    spec: CliSpec | None,
    extra_paths_file: Path,
) -> LaunchArgs:
    """Directory args + chosen flags + user args, checked against the checkout's ``cli_args.py``.

    The user's ``comfyui.args`` are checked first, so a flag this checkout does not know (say
    ``--normalvram``) is dropped *before* it could stop Phoenix choosing that flag family.
    """
    dropped: list[str] = []
    warnings: list[str] = []
    if spec is not None:
        user = filter_args(comfy.args, spec)
        dropped += user.dropped
        warnings += user.warnings
        comfy = comfy.model_copy(update={"args": list(user.args)})
    else:
        warnings.append(f"cannot read {comfy.path}/comfy/cli_args.py: flags are not checked")
    choice = choose_flags(gpu, comfy.performance, features, comfy)
    warnings += choice.warnings
    dir_args, extra_yaml = directory_args(layout, spec)
    if extra_yaml is not None:
        dir_args += ["--extra-model-paths-config", str(extra_paths_file)]
    args = [*dir_args, *choice.args]
    if spec is not None:
        final = filter_args(args, spec)
        dropped += final.dropped
        warnings += final.warnings
        args = list(final.args)
    return LaunchArgs(choice, tuple(args), tuple(dropped), tuple(warnings), extra_yaml)


def _filebrowser(
    options: RunOptions,
    manifest: Manifest,
    layout: Layout,
    password: str | None,
    environ: MutableMapping[str, str],
    board: StatusBoard,
    console: IO[str],
) -> tuple[ServiceSpec | None, str | None]:
    """FileBrowser's service spec and version, or ``(None, None)`` when off or missing."""
    config = manifest.services.filebrowser
    if not config.enabled:
        return None, None
    binary = options.filebrowser_binary or filebrowser.find_binary()
    if binary is None:
        message = "FileBrowser is enabled but its binary is not on PATH: skipped"
        log.warning("%s", message)
        board.warn(message)
        return None, None
    creds = filebrowser.credentials(config.username, password)
    register_secret(creds.password)
    spec = filebrowser.filebrowser_service(
        binary, config, layout.root, layout.phoenix / "run", creds, environ
    )
    if creds.generated:
        # shown once, on the console only; it is registered, so every log line masks it
        console.write(
            f"phoenix: FileBrowser login: {creds.username} / {creds.password}\n"
            "phoenix: (generated; set FB_PASSWORD to choose your own; not shown again)\n"
        )
        console.flush()
    return spec, filebrowser.binary_version(binary)


def _supervise(
    supervisor: Supervisor,
    stop: _Stop,
    board: StatusBoard,
    torch_check: TorchCheck | None,
    console: IO[str],
    began: float,
    comfy_port: int,
    layout: Layout,
) -> None:
    """Poll the services until a signal; raise on a failed torch check or spent budget."""
    ready_said = False
    while not stop.event.is_set():
        if torch_check is not None and torch_check.finished():
            _torch_verdict(torch_check, board, console)
            torch_check = None
        supervisor.poll()
        comfy = supervisor.get("comfyui")
        if comfy is not None and comfy.ready and not ready_said:
            ready_said = True
            board.set(phase="ready")
            board.mark("ready", began)
            _say(console, f"ComfyUI is ready on :{comfy_port}")
        elif comfy is not None and not comfy.ready and ready_said:
            ready_said = False
            board.set(phase="starting")
        if supervisor.failed:
            raise ServiceError(
                f"service(s) {', '.join(supervisor.failed)} failed past the restart budget",
                where="phoenix run",
                hint=f"see {layout.logs}/<service>.log",
            )
        stop.event.wait(0.1)


def _shutdown(
    options: RunOptions,
    board: StatusBoard,
    supervisor: Supervisor | None,
    layout: Layout | None,
    mode: str,
    paranoid: bool,
    stop: _Stop,
    console: IO[str],
    code: int,
) -> int:
    began = stop.at or time.monotonic()
    board.set(phase="stopping")
    if supervisor is not None:
        supervisor.stop(timeout=options.stop_timeout_s)
    if layout is not None:
        # as the dropped user: its own home (root's histories went at start)
        homes = homes_to_clean(options.homes, os.environ, [])
        targets = cleanup.cleanup_targets(
            layout, mode, paranoid, homes, hf_home=os.environ.get("HF_HOME")
        )
        deadline = max(began + options.grace_s - 0.5, time.monotonic() + 1.0)
        scrubbed = cleanup.scrub_secret_remnants(cleanup.log_files(layout))
        summary = cleanup.run_cleanup(targets, deadline, protected=[layout.models])
        _say(
            console, summary.line() + (f"; masked secrets in {scrubbed} log(s)" if scrubbed else "")
        )
        for line in cleanup.error_lines(summary.errors):
            console.write(f"{line}\n")
    board.set(phase="stopped")
    return code

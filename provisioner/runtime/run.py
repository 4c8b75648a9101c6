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
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import IO

from provisioner.core.config import Versions, load_versions
from provisioner.core.errors import PhoenixError, StateError
from provisioner.core.fsio import atomic_write_text
from provisioner.core.layout import Layout
from provisioner.core.redact import redact, register_secret
from provisioner.manifest.models import Manifest
from provisioner.manifest.variants import launch_weights
from provisioner.runtime import cleanup, storage, system
from provisioner.runtime.cliargs import load_cli_spec
from provisioner.runtime.flags import InstalledFeatures
from provisioner.runtime.gpu import GpuFacts, read_gpu_facts
from provisioner.runtime.health import HealthServer, StatusBoard
from provisioner.runtime.launch import comfyui_service, filebrowser_service, launch_args
from provisioner.runtime.lifecycle import (
    SignalStop,
    StopRequested,
    TorchCheck,
    say,
    start_health,
    supervise,
    torch_verdict,
)
from provisioner.runtime.probe import probe_features, reported_versions
from provisioner.runtime.run_inputs import (
    ApplyFn,
    LoadFn,
    PlanFn,
    RunOptions,
    default_apply,
    default_comfy_python,
    default_load,
    default_plan,
    load_run_lock,
)
from provisioner.runtime.services import Supervisor

log = logging.getLogger("phoenix.run")

EXIT_OK, EXIT_INTERRUPTED = 0, 130


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




def _prepare_root(layout: Layout) -> None:
    """Create the workspace folders; a root this user cannot write is a :class:`StateError`
    (started as non-root, e.g. by Kubernetes' runAsUser, Phoenix chowns nothing)."""
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
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except PermissionError as exc:
            raise StateError(
                f"cannot create {path} as uid {os.geteuid()}: {exc.strerror}",
                where=f"workspace root {layout.root}",
                hint="make the root writable by this user: on Kubernetes set the pod's "
                "securityContext.fsGroup to its group (examples/kubernetes/deployment.yaml) on "
                "a volume that honours fsGroup, or chown the volume's root to it once; or start "
                "the container as root, and Phoenix gives the root to security.user",
            ) from exc


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
    stop = SignalStop()
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
        # before anything changes: a missing or stale lock file is the user's error, exit 1
        locked = load_run_lock(options.manifest) if options.locked else None
        board.mark("loaded", began)
        user = desired.manifest.security.user
        system.harden(environ, homes_to_clean(options.homes, environ, [user]))
        for value in (secrets.hf_token, secrets.civitai_token, secrets.fb_password):
            register_secret(value)
        removed = system.scrub_secret_env(environ)
        say(console, f"hardened: core dumps off, umask 077; secrets read from {removed or 'none'}")
        manifest = desired.manifest
        paranoid = manifest.security.paranoid
        board.set(phase="setup")
        for warning in desired.warnings:
            board.warn(warning)

        # storage mode and root; the plan (read-only) gives its hash and the bytes to fetch
        report = choose_storage(options, manifest, environ, 0)
        layout = Layout(report.root)
        _prepare_root(layout)
        # for `phoenix stop` (and `scripts/service_manager.sh stop`); removed at cleanup
        atomic_write_text(layout.run_pid, f"{os.getpid()}\n")
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
        say(console, f"storage: {report.mode} at {report.root} ({report.reason})")
        for warning in report.warnings:
            log.warning("storage: %s", warning)
            board.warn(warning)

        # health API from here on, so a person can watch apply
        health_port = options.health_port or manifest.services.health.port
        comfy_port = manifest.comfyui.port
        if manifest.services.health.enabled:
            where = "--health-port" if options.health_port else "services.health.port"
            health = start_health(board, options.health_host, health_port, comfy_port, where)
            say(console, f"health API on :{health.port} (/healthz /readyz /status)")

        # drop root for everything else
        decision = system.decide_privileges(
            os.geteuid(), manifest.security.user, system.lookup_user(manifest.security.user)
        )
        say(console, decision.reason)
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
                    raise StopRequested
                kw = {"locked": locked} if locked is not None else {}
                result = apply(desired, layout, versions, secrets, jobs=options.jobs, **kw)
            except KeyboardInterrupt:
                raise StopRequested from None
            finally:
                stop.interrupt_apply = False
            if stop.event.is_set():
                raise StopRequested
            results = list(result.results)
            board.record_results(results, len(getattr(result, "remaining", ())))
            failed = [r for r in results if not r.ok]
            for item in failed:
                level = "required" if item.required else "optional"
                board.warn(f"apply: {level} item {item.id} failed: {item.message}")
                say(console, f"apply: {level} item {item.id} failed: {item.message}")
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
            torch_verdict(torch_check, board, console)
            torch_check = None
        extra_file = layout.phoenix / "run" / "extra_model_paths.yaml"
        launch = launch_args(
            gpu, features, manifest.comfyui, layout, load_cli_spec(checkout), extra_file,
            launch_weights(desired.variants),
        )  # fmt: skip
        if launch.extra_paths_yaml is not None:
            atomic_write_text(extra_file, launch.extra_paths_yaml)
        for warning in launch.warnings:
            board.warn(warning)
            log.warning("%s", warning)
        choice, args = launch.choice, list(launch.args)
        reasons = [{"flag": r.flag, "reason": r.reason} for r in choice.reasons]
        board.set(flags=args, flag_reasons=reasons)
        say(console, "ComfyUI flags: " + " ".join(args))
        for r in choice.reasons:
            say(console, f"  {r.flag or '(none)'}: {r.reason}")

        comfy_env = system.service_env(environ, {"PYTHONUNBUFFERED": "1"})
        specs = [
            comfyui_service(
                python, checkout, args, comfy_env, comfy_port, options.restart,
                options.stop_timeout_s,
            )
        ]
        fb_spec, fb_version = filebrowser_service(
            options.filebrowser_binary, manifest, layout, fb_password, environ, board, console
        )
        if fb_spec is not None:
            specs.append(fb_spec)
        board.update_versions(**reported_versions(gpu, features, checkout, fb_version))

        if stop.event.is_set():
            raise StopRequested
        supervisor = Supervisor(specs, layout.logs, echo=console)
        board.set(services=supervisor.snapshot, phase="starting", gate="comfyui")
        supervisor.start()
        board.mark("launched", began)

        # 4. wait for a signal, a failed torch check, or a service past its budget
        supervise(supervisor, stop, board, torch_check, console, began, comfy_port, layout)
        code = EXIT_INTERRUPTED if stop.signum == signal.SIGINT else EXIT_OK
        say(console, f"received {signal.Signals(stop.signum or signal.SIGTERM).name}: stopping")
    except StopRequested:
        code = EXIT_INTERRUPTED if stop.signum == signal.SIGINT else EXIT_OK
        say(console, "stop requested before ComfyUI was launched: stopping")
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



def _shutdown(
    options: RunOptions,
    board: StatusBoard,
    supervisor: Supervisor | None,
    layout: Layout | None,
    mode: str,
    paranoid: bool,
    stop: SignalStop,
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
        say(
            console, summary.line() + (f"; masked secrets in {scrubbed} log(s)" if scrubbed else "")
        )
        for line in cleanup.error_lines(summary.errors):
            console.write(f"{line}\n")
    board.set(phase="stopped")
    return code

"""Services as data, and a supervisor that keeps them alive and stops them cleanly.

Each service runs in its own process group (``start_new_session``), so stopping it reaches
every process it started: SIGTERM to the group, a grace period, then SIGKILL. A service that
exits is restarted after an exponential backoff until its restart budget is spent; then the
supervisor reports it failed and ``phoenix run`` stops with a non-zero exit code. Output goes
through :func:`~provisioner.core.redact.redact` into ``.phoenix/logs/<name>.log`` (rotated).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from provisioner.core.redact import redact

log = logging.getLogger("phoenix.services")

LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3
PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class RestartPolicy:
    """Restart after ``initial * 2**(n-1)`` seconds (capped), at most ``max_restarts`` times.

    A run that lasted ``reset_after`` seconds forgets earlier failures.
    """

    max_restarts: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    reset_after: float = 300.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number ``attempt`` (1-based)."""
        return float(min(self.backoff_initial * 2 ** max(attempt - 1, 0), self.backoff_max))


@dataclass(frozen=True)
class ServiceSpec:
    """One supervised program. ``env`` is complete: nothing else is inherited."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str | None = None
    probe_url: str | None = None
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    stop_timeout: float = 5.0
    echo: bool = True


@dataclass
class ServiceState:
    """What the supervisor knows about one service (shown by ``/status``)."""

    spec: ServiceSpec
    state: str = "pending"
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    last_exit: int | None = None
    started_at: float | None = None
    next_start: float = 0.0
    ready: bool = False
    last_probe: float = 0.0
    reader: threading.Thread | None = None

    def to_json(self) -> dict[str, Any]:
        """The public view: never the environment."""
        return {
            "name": self.spec.name,
            "state": self.state,
            "pid": self.proc.pid if self.proc and self.proc.poll() is None else None,
            "restarts": self.restarts,
            "max_restarts": self.spec.restart.max_restarts,
            "last_exit": self.last_exit,
            "ready": self.ready,
        }


def become_subreaper() -> bool:
    """Make orphaned grandchildren our children (Linux ``PR_SET_CHILD_SUBREAPER``)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def reap_orphans(known: set[int]) -> list[int]:
    """Reap zombie children that no ``Popen`` owns (orphans re-parented to us)."""
    me = os.getpid()
    reaped: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return reaped
    for entry in entries:
        if not entry.isdigit() or int(entry) in known:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == b"Z" and int(fields[1]) == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(entry), os.WNOHANG)
                reaped.append(int(entry))
    return reaped


def _service_logger(name: str, log_dir: Path) -> logging.Logger:
    logger = logging.getLogger(f"phoenix.service.{name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    handler = logging.handlers.RotatingFileHandler(
        log_dir / f"{name}.log", maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    return logger


def _pump(stream: IO[bytes], logger: logging.Logger, prefix: str, echo: IO[str] | None) -> None:
    for raw in iter(stream.readline, b""):
        line = redact(raw.decode("utf-8", "replace").rstrip("\n"))
        logger.info(line)
        if echo is not None:
            with contextlib.suppress(ValueError, OSError):
                echo.write(f"{prefix}{line}\n")
                echo.flush()
    stream.close()


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def probe_http(url: str, timeout: float = 0.5) -> bool:
    """True when ``url`` answers HTTP 200 within ``timeout``."""
    import urllib.request  # here, not at the top: it would delay ComfyUI's launch

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


class Supervisor:
    """Starts services, restarts them with backoff, reports state, and stops them."""

    def __init__(
        self,
        specs: list[ServiceSpec],
        log_dir: Path,
        *,
        echo: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[str], bool] = probe_http,
    ) -> None:
        self.services = [ServiceState(spec) for spec in specs]
        self.log_dir = log_dir
        self.echo = echo if echo is not None else sys.stdout
        self.clock = clock
        self.probe = probe
        self._lock = threading.Lock()
        self._stopping = False
        self._last_reap = 0.0

    def _spawn(self, svc: ServiceState) -> None:
        spec = svc.spec
        logger = _service_logger(spec.name, self.log_dir)
        try:
            proc = subprocess.Popen(
                list(spec.argv),
                env=dict(spec.env),
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            log.error("service %s: cannot start %s: %s", spec.name, spec.argv[0], exc.strerror)
            svc.proc, svc.last_exit = None, 127
            self._after_exit(svc, self.clock())
            return
        svc.proc, svc.state, svc.ready = proc, "running", False
        svc.started_at = self.clock()
        assert proc.stdout is not None
        echo = self.echo if spec.echo else None
        svc.reader = threading.Thread(
            target=_pump,
            args=(proc.stdout, logger, f"[{spec.name}] ", echo),
            name=f"log-{spec.name}",
            daemon=True,
        )
        svc.reader.start()
        log.info("service %s: started pid %d", spec.name, proc.pid)

    def start(self) -> None:
        """Start every service now."""
        become_subreaper()
        with self._lock:
            for svc in self.services:
                self._spawn(svc)

    def _after_exit(self, svc: ServiceState, now: float) -> None:
        policy = svc.spec.restart
        if svc.proc is not None:
            _killpg(svc.proc.pid, signal.SIGKILL)  # whatever it left behind in its group
        if svc.started_at is not None and now - svc.started_at >= policy.reset_after:
            svc.restarts = 0
        if svc.restarts >= policy.max_restarts:
            svc.state = "failed"
            log.error(
                "service %s: exited with %s and has used its %d restarts: giving up",
                svc.spec.name,
                svc.last_exit,
                policy.max_restarts,
            )
            return
        svc.restarts += 1
        delay = policy.delay(svc.restarts)
        svc.state, svc.next_start, svc.ready = "backoff", now + delay, False
        log.warning(
            "service %s: exited with %s; restart %d/%d in %.1f s",
            svc.spec.name,
            svc.last_exit,
            svc.restarts,
            policy.max_restarts,
            delay,
        )

    def poll(self) -> None:
        """One supervision step: notice exits, restart when due, probe readiness, reap."""
        now = self.clock()
        due: list[tuple[ServiceState, subprocess.Popen[bytes], str]] = []
        with self._lock:
            if self._stopping:
                return
            for svc in self.services:
                if svc.state == "running" and svc.proc is not None:
                    code = svc.proc.poll()
                    if code is not None:
                        svc.last_exit = code
                        self._after_exit(svc, now)
                    elif svc.spec.probe_url and not svc.ready and now - svc.last_probe >= 0.25:
                        svc.last_probe = now
                        due.append((svc, svc.proc, svc.spec.probe_url))
                elif svc.state == "backoff" and now >= svc.next_start:
                    self._spawn(svc)
            if now - self._last_reap >= 1.0:
                self._last_reap = now
                reap_orphans({s.proc.pid for s in self.services if s.proc is not None})
        for svc, proc, url in due:  # outside the lock: /status and /healthz never wait on a probe
            ready = self.probe(url)
            with self._lock:
                if ready and svc.proc is proc and svc.state == "running" and not self._stopping:
                    svc.ready = True
                    log.info("service %s: ready", svc.spec.name)

    @property
    def failed(self) -> list[str]:
        """Names of services that spent their restart budget."""
        return [svc.spec.name for svc in self.services if svc.state == "failed"]

    def get(self, name: str) -> ServiceState | None:
        """The state of service ``name``."""
        return next((svc for svc in self.services if svc.spec.name == name), None)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every service's public state."""
        with self._lock:
            return [svc.to_json() for svc in self.services]

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM every group, wait ``timeout`` (default: longest stop_timeout), then SIGKILL.

        The lock is held only to flip into stopping mode, so ``/status`` keeps answering.
        """
        with self._lock:
            self._stopping = True
            live = [s for s in self.services if s.proc is not None and s.proc.poll() is None]
            for svc in live:
                svc.state = "stopping"
        for svc in live:
            assert svc.proc is not None
            log.info("service %s: stopping (SIGTERM to group %d)", svc.spec.name, svc.proc.pid)
            _killpg(svc.proc.pid, signal.SIGTERM)
        limit = (
            timeout
            if timeout is not None
            else max((s.spec.stop_timeout for s in self.services), default=0.0)
        )
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and any(
            s.proc is not None and s.proc.poll() is None for s in live
        ):
            time.sleep(0.05)
        for svc in self.services:
            if svc.proc is None:
                continue
            if svc.proc.poll() is None:
                log.warning("service %s: did not stop in %.1f s, SIGKILL", svc.spec.name, limit)
            _killpg(svc.proc.pid, signal.SIGKILL)  # also whatever its group left behind
            with contextlib.suppress(subprocess.TimeoutExpired):
                svc.proc.wait(timeout=2)
            with self._lock:
                if svc.state != "failed":
                    svc.state = "stopped"
                svc.last_exit = svc.proc.returncode
        for svc in self.services:
            if svc.reader is not None:
                svc.reader.join(timeout=2)
        reap_orphans(set())

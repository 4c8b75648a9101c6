"""The run after launch: which signal asked to stop, the background torch check, and the loop that
supervises the services until a signal (raising on a failed torch check or a spent restart
budget)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import IO

from provisioner.core.errors import ServiceError
from provisioner.core.layout import Layout
from provisioner.runtime.flags import InstalledFeatures
from provisioner.runtime.gpu import GpuFacts, check_arch
from provisioner.runtime.health import HealthServer, StatusBoard
from provisioner.runtime.services import Supervisor


class SignalStop:
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


class StopRequested(Exception):
    """A signal arrived before ComfyUI was launched: skip ahead to stop and cleanup."""


def say(out: IO[str], text: str) -> None:
    out.write(f"phoenix: {text}\n")
    out.flush()

def start_health(
    board: StatusBoard, host: str, port: int, comfy_port: int, where: str
) -> HealthServer:
    """Start the health API on ``host:port``; a port in use is a :class:`ServiceError`."""
    try:
        server = HealthServer(board, host, port, f"http://127.0.0.1:{comfy_port}/system_stats")
    except OSError as exc:
        raise ServiceError(
            f"the health API cannot listen on {host}:{port}: {exc.strerror or exc}",
            where=where,
            hint="choose a free port, or stop what is using it",
        ) from exc
    return server.start()


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


def torch_verdict(check: TorchCheck, board: StatusBoard, console: IO[str]) -> None:
    """Record torch's versions; raise :class:`GPUError` when it has no kernels for the GPU."""
    result = check.result or InstalledFeatures()
    board.update_versions(torch=result.torch, cuda=result.torch_cuda)
    if result.torch_arch_list is None:
        board.warn("torch could not be imported in ComfyUI's interpreter: GPU check skipped")
        return
    check_arch(check.gpu, result.torch_arch_list)
    say(console, f"torch {result.torch} (CUDA {result.torch_cuda}) has kernels for {check.gpu.sm}")

def supervise(
    supervisor: Supervisor,
    stop: SignalStop,
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
            torch_verdict(torch_check, board, console)
            torch_check = None
        supervisor.poll()
        comfy = supervisor.get("comfyui")
        if comfy is not None and comfy.ready and not ready_said:
            ready_said = True
            board.set(phase="ready")
            board.mark("ready", began)
            say(console, f"ComfyUI is ready on :{comfy_port}")
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



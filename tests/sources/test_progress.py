"""Progress: periodic log lines off a terminal, tqdm bars on one."""

from __future__ import annotations

import io

from provisioner.core.units import MB
from provisioner.sources.progress import (
    BarProgress,
    LogProgress,
    human_eta,
    make_progress,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_every_interval_with_percent_rate_eta() -> None:
    clock, lines = FakeClock(), []
    progress = LogProgress(5.0, clock=clock, emit=lines.append)
    task = progress.task("flux1-dev.safetensors", total=100 * MB)
    clock.now = 1.0
    task.update(10 * MB)  # under the interval: silent
    clock.now = 5.0
    task.update(10 * MB)  # 20 MB in 5 s
    clock.now = 10.0
    task.close(ok=True)

    assert lines == [
        "flux1-dev.safetensors: starting (100.0 MB)",
        "flux1-dev.safetensors:  20.0% 20.0 MB/100.0 MB at 4.0 MB/s ETA 0:20",
        "flux1-dev.safetensors: done, 20.0 MB in 10.0s (2.0 MB/s)",
    ]


def test_log_without_total_and_failure_line() -> None:
    clock, lines = FakeClock(), []
    task = LogProgress(1.0, clock=clock, emit=lines.append).task("x", None, done=2000)
    clock.now = 2.0
    task.update(2000)
    task.close(ok=False)
    assert lines == [
        "x: starting, resuming at 2.0 kB",
        "x: 4.0 kB at 1.0 kB/s",
        "x: failed at 4.0 kB",
    ]


def test_make_progress_picks_by_terminal() -> None:
    assert isinstance(make_progress(io.StringIO()), LogProgress)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bars = make_progress(stream)
    assert isinstance(bars, BarProgress)
    task = bars.task("a.safetensors", 2048)
    task.update(1024)
    task.restart(0, 2048)
    task.update(2048)
    task.close(ok=True)
    bars.close()
    assert "a.safetensors" in stream.getvalue() and "total" in stream.getvalue()


def test_human_eta() -> None:
    assert human_eta(75) == "1:15" and human_eta(3725) == "1:02:05"

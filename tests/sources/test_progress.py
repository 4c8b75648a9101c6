"""Progress: periodic log lines off a terminal, tqdm bars on one."""

from __future__ import annotations

import io

from provisioner.sources.progress import (
    BarProgress,
    LogProgress,
    human_bytes,
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
    task = progress.task("flux1-dev.safetensors", total=100 * 1024 * 1024)
    clock.now = 1.0
    task.update(10 * 1024 * 1024)  # under the interval: silent
    clock.now = 5.0
    task.update(10 * 1024 * 1024)  # 20 MiB in 5 s
    clock.now = 10.0
    task.close(ok=True)

    assert lines == [
        "flux1-dev.safetensors: starting (100.0 MiB)",
        "flux1-dev.safetensors:  20.0% 20.0 MiB/100.0 MiB at 4.0 MiB/s ETA 0:20",
        "flux1-dev.safetensors: done, 20.0 MiB in 10.0s (2.0 MiB/s)",
    ]


def test_log_without_total_and_failure_line() -> None:
    clock, lines = FakeClock(), []
    task = LogProgress(1.0, clock=clock, emit=lines.append).task("x", None, done=2048)
    clock.now = 2.0
    task.update(2048)
    task.close(ok=False)
    assert lines == [
        "x: starting, resuming at 2.0 KiB",
        "x: 4.0 KiB at 1.0 KiB/s",
        "x: failed at 4.0 KiB",
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


def test_humanize() -> None:
    assert human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 1024**4) == "3.0 TiB"
    assert human_eta(75) == "1:15" and human_eta(3725) == "1:02:05"

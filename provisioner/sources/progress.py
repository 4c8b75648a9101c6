"""Transfer progress a person can follow: bars on a terminal, periodic lines in a log.

RunPod's log view is not a terminal, so there :class:`LogProgress` writes one line per file
every few seconds (percent, rate, ETA). On a terminal :class:`BarProgress` draws a tqdm bar per
file and one for the total. Both are thread-safe; the download engine calls
``progress.task(...)`` once per transfer and ``update``/``close`` on the returned handle.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from provisioner.core.units import human_bytes

logger = logging.getLogger("phoenix.download")


class ProgressTask(Protocol):
    """One transfer's progress handle."""

    def update(self, nbytes: int) -> None:
        """``nbytes`` more bytes arrived."""

    def restart(self, done: int, total: int | None) -> None:
        """The transfer starts over (or resumes) at ``done`` bytes of ``total``."""

    def close(self, ok: bool) -> None:
        """The transfer ended (``ok`` False when it failed)."""


class Progress(Protocol):
    """A progress reporter shared by concurrent transfers."""

    def task(self, label: str, total: int | None, done: int = 0) -> ProgressTask:
        """Start reporting one transfer of ``total`` bytes (None: unknown), ``done`` already."""

    def close(self) -> None:
        """No more transfers; release terminal lines."""


def human_eta(seconds: float) -> str:
    """``3725`` → ``1:02:05``; ``75`` → ``1:15``."""
    seconds = max(0, int(seconds + 0.5))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _LogTask:
    def __init__(self, owner: LogProgress, label: str, total: int | None, done: int) -> None:
        self._owner = owner
        self._label = label
        self._total = total
        self._done = done
        self._lock = threading.Lock()
        now = owner.clock()
        self._start, self._start_done = now, done
        self._last = now
        owner.emit(
            f"{label}: starting"
            + (f" ({human_bytes(total)})" if total else "")
            + (f", resuming at {human_bytes(done)}" if done else "")
        )

    def update(self, nbytes: int) -> None:
        with self._lock:
            self._done += nbytes
            now = self._owner.clock()
            if now - self._last < self._owner.interval:
                return
            self._last = now
            line = self._line(now)
        self._owner.emit(line)

    def restart(self, done: int, total: int | None) -> None:
        with self._lock:
            self._done, self._total = done, total if total is not None else self._total
            self._start, self._start_done = self._owner.clock(), done

    def _line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = (self._done - self._start_done) / elapsed
        parts = [f"{self._label}:"]
        if self._total:
            parts.append(f"{100.0 * self._done / self._total:5.1f}%")
            parts.append(f"{human_bytes(self._done)}/{human_bytes(self._total)}")
        else:
            parts.append(human_bytes(self._done))
        parts.append(f"at {human_bytes(rate)}/s")
        if self._total and rate > 0:
            parts.append(f"ETA {human_eta((self._total - self._done) / rate)}")
        return " ".join(parts)

    def close(self, ok: bool) -> None:
        with self._lock:
            now = self._owner.clock()
            elapsed = max(now - self._start, 1e-9)
            moved = self._done - self._start_done
            done = self._done
        if ok:
            self._owner.emit(
                f"{self._label}: done, {human_bytes(done)} in {elapsed:.1f}s "
                f"({human_bytes(moved / elapsed)}/s)"
            )
        else:
            self._owner.emit(f"{self._label}: failed at {human_bytes(done)}")


class LogProgress:
    """One log line per file every ``interval`` seconds, plus a start and an end line."""

    def __init__(
        self,
        interval: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[[str], None] | None = None,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.emit: Callable[[str], None] = emit or logger.info

    def task(self, label: str, total: int | None, done: int = 0) -> ProgressTask:
        """A handle that logs this transfer's progress."""
        return _LogTask(self, label, total, done)

    def close(self) -> None:
        """Nothing to release for log output."""


class _BarTask:
    def __init__(self, owner: BarProgress, bar: Any) -> None:
        self._owner = owner
        self._bar = bar

    def update(self, nbytes: int) -> None:
        with self._owner.lock:
            self._bar.update(nbytes)
            self._owner.total_bar.update(nbytes)

    def restart(self, done: int, total: int | None) -> None:
        with self._owner.lock:
            if total is not None and total != self._bar.total:
                grand = self._owner.total_bar
                grand.total = (grand.total or 0) - (self._bar.total or 0) + total
                self._bar.total = total
            self._bar.reset(total=self._bar.total)
            self._bar.update(done)

    def close(self, ok: bool) -> None:
        with self._owner.lock:
            if not ok:
                self._bar.set_postfix_str("failed", refresh=True)
            self._bar.close()


class BarProgress:
    """A tqdm bar per file and one for the total, on a terminal stream."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.total_bar = tqdm(
            desc="total",
            unit="B",
            unit_scale=True,
            unit_divisor=1000,
            file=self._stream,
            position=0,
            total=0,
            dynamic_ncols=True,
        )
        self._position = 0

    def task(self, label: str, total: int | None, done: int = 0) -> ProgressTask:
        """A bar for this transfer; its bytes also feed the total bar."""
        with self.lock:
            self._position += 1
            bar = self._tqdm(
                desc=label,
                unit="B",
                unit_scale=True,
                unit_divisor=1000,
                file=self._stream,
                total=total,
                initial=done,
                position=self._position,
                leave=False,
                dynamic_ncols=True,
            )
            if total:
                self.total_bar.total = (self.total_bar.total or 0) + total
                self.total_bar.update(done)
        return _BarTask(self, bar)

    def close(self) -> None:
        """Close the total bar."""
        with self.lock:
            self.total_bar.close()


def make_progress(stream: TextIO | None = None, *, interval: float = 5.0) -> Progress:
    """Bars when ``stream`` (default stderr) is a terminal, periodic log lines otherwise."""
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        return BarProgress(stream)
    return LogProgress(interval)

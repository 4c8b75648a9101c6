"""Progress of a Hugging Face transfer in Phoenix's own bars and log lines: the tqdm-shaped
class huggingface_hub drives (:class:`HubProgressBar`), or, for a huggingface_hub that takes no
``tqdm_class``, a poll of the bytes arriving in staging (:class:`StagingWatch`)."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

from provisioner.sources.download import DownloadCancelled
from provisioner.sources.progress import Progress


class HubProgressBar:
    """The tqdm-shaped object huggingface_hub drives, reporting to Phoenix's progress.

    So HF transfers show like every other one: a bar on a terminal, a line every few seconds
    (percent, rate, ETA) in RunPod's log view. huggingface_hub calls :meth:`update` after every
    block it writes, so this is also where a set ``cancel`` stops the transfer (its
    ``.incomplete`` file stays for a resume).
    """

    def __init__(
        self,
        progress: Progress,
        label: str,
        *,
        cancel: threading.Event | None = None,
        total: int | None = None,
        initial: int = 0,
        **_: Any,
    ) -> None:
        self.n = initial
        self.total = total
        self._label = label
        self._cancel = cancel
        self._task = progress.task(label, total, initial)
        self._closed = False

    def update(self, n: float | None = 1) -> None:
        """``n`` more bytes (negative when huggingface_hub restarts a resumed transfer)."""
        if self._cancel is not None and self._cancel.is_set():
            raise DownloadCancelled(f"download of {self._label} cancelled")
        step = int(n or 0)
        self.n += step
        if step >= 0:
            self._task.update(step)
        else:
            self._task.restart(self.n, self.total)

    def close(self, ok: bool = True) -> None:
        if not self._closed:
            self._closed = True
            self._task.close(ok)

    def __enter__(self) -> HubProgressBar:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close(exc_type is None)


class StagingWatch:
    """Progress for a transfer that reports none: poll the bytes that arrived in ``staging``.

    huggingface_hub before 1.0 has no ``tqdm_class`` argument on ``hf_hub_download`` (only its
    own tqdm, which does not reach Phoenix's log lines). Both of its backends (HTTP and hf_xet)
    write the file being fetched into ``local_dir`` (an ``.incomplete`` file, renamed at the
    end), and the staging folder holds one file's transfer, so its largest file is how far the
    transfer got. A context manager: a daemon thread polls every ``interval`` seconds until exit.
    """

    def __init__(
        self,
        progress: Progress,
        label: str,
        staging: Path,
        total: int | None,
        *,
        interval: float = 0.5,
    ) -> None:
        self._staging = staging
        self._total = total
        self._interval = interval
        self._seen = self._arrived()
        self._task = progress.task(label, total, self._seen)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {label}", daemon=True)

    def _arrived(self) -> int:
        """Bytes of the largest file under staging (capped at the expected size)."""
        largest = 0
        for dirpath, _dirs, names in os.walk(self._staging):
            for name in names:
                with contextlib.suppress(OSError):
                    largest = max(largest, os.stat(os.path.join(dirpath, name)).st_size)
        return min(largest, self._total) if self._total is not None else largest

    def poll(self) -> None:
        """Report the bytes that arrived since the last poll (a restart if the file shrank)."""
        now = self._arrived()
        if now >= self._seen:
            if now > self._seen:
                self._task.update(now - self._seen)
        else:
            self._task.restart(now, self._total)
        self._seen = now

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.poll()

    def __enter__(self) -> StagingWatch:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is None:
            self.poll()
        self._task.close(exc_type is None)

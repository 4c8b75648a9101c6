"""The one way Phoenix runs a child process for software provisioning (git, pip, uv, install.py).

Every run goes through :func:`run`, so a child never inherits a token (the environment is
scrubbed of known secret variables), always has a timeout, and tests can record exactly which
commands a code path ran (:func:`recording`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioner.manifest.envmap import SECRET_NAMES

#: Variables that hold credentials; never passed to a child (git, pip, uv, install.py).
SECRET_VARS = frozenset(SECRET_NAMES)

_recorders: list[list[list[str]]] = []
_rec_lock = threading.Lock()


@dataclass(frozen=True)
class Result:
    """A finished child: argv, exit status and its combined output (stdout then stderr)."""

    argv: tuple[str, ...]
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 15) -> str:
        """The last ``lines`` non-empty lines of output, for error messages."""
        kept = [line for line in self.output.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])


class Timeout(Exception):
    """The child ran past its timeout and was killed."""

    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        super().__init__(f"{argv[0]} timed out after {timeout:.0f}s")
        self.argv = tuple(argv)
        self.timeout = timeout


def child_env(extra: Mapping[str, str] | None = None, drop: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment without secrets (and ``drop``), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS and k not in drop}
    env.update(extra or {})
    return env


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> Result:
    """Run ``argv`` (no shell) and return its result; raises :class:`Timeout` past ``timeout``.

    ``env`` defaults to :func:`child_env`; stdin is closed so nothing can wait for input.
    """
    args = [str(a) for a in argv]
    with _rec_lock:
        for rec in _recorders:
            rec.append(args)
    try:
        done = subprocess.run(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise Timeout(args, timeout) from exc
    except OSError as exc:
        return Result(tuple(args), 127, f"{args[0]}: {exc.strerror or exc}")
    return Result(tuple(args), done.returncode, done.stdout.decode("utf-8", "replace"))


class Pending:
    """A child started by :func:`start`; :meth:`result` waits for it, :meth:`cancel` ends it."""

    def __init__(
        self,
        args: list[str],
        popen: subprocess.Popen[bytes] | None,
        timeout: float,
        error: str = "",
    ) -> None:
        self.args = args
        self._popen = popen
        self._error = error
        self._reaped = popen is None
        self._deadline = time.monotonic() + timeout
        self._timeout = timeout

    def result(self) -> Result:
        """Wait for the child (within the timeout given to :func:`start`) and return its result."""
        if self._popen is None:
            return Result(tuple(self.args), 127, f"{self.args[0]}: {self._error}")
        try:
            out, _ = self._popen.communicate(timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired as exc:
            self.cancel()
            raise Timeout(self.args, self._timeout) from exc
        self._reaped = True
        return Result(tuple(self.args), self._popen.returncode, out.decode("utf-8", "replace"))

    def cancel(self) -> None:
        """Kill the child if it still runs and reap it (idempotent)."""
        if self._reaped or self._popen is None:
            return
        if self._popen.poll() is None:
            self._popen.kill()
        self._popen.communicate()
        self._reaped = True


def start(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 600.0
) -> Pending:
    """Start ``argv`` like :func:`run` does (scrubbed env, no stdin) without waiting for it."""
    args = [str(a) for a in argv]
    with _rec_lock:
        for rec in _recorders:
            rec.append(args)
    try:
        popen = subprocess.Popen(
            args,
            env=dict(env) if env is not None else child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as exc:
        return Pending(args, None, timeout, str(exc.strerror or exc))
    return Pending(args, popen, timeout)


@contextlib.contextmanager
def recording() -> Iterator[list[list[str]]]:
    """Collect the argv of every child started through :func:`run` inside the block."""
    calls: list[list[str]] = []
    with _rec_lock:
        _recorders.append(calls)
    try:
        yield calls
    finally:
        with _rec_lock:
            _recorders.remove(calls)

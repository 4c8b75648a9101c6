"""The supervisor with real child processes: groups, backoff, budget, stop, logs, reaping."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

from provisioner.core.redact import forget_secrets, register_secret
from provisioner.runtime.services import (
    RestartPolicy,
    ServiceSpec,
    Supervisor,
)
from tests.support.pod import group_members

ENV = {"PATH": os.environ["PATH"]}


def _spec(name: str, code: str, **kw: object) -> ServiceSpec:
    return ServiceSpec(name, (sys.executable, "-c", code), ENV, **kw)  # type: ignore[arg-type]


def _run_until(sup: Supervisor, cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sup.poll()
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"condition not met: {sup.snapshot()}")


def test_backoff_delays() -> None:
    policy = RestartPolicy(backoff_initial=1.0, backoff_max=5.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_crash_restart_budget_and_logs(tmp_path: Path) -> None:
    register_secret("s3cr3t-value")
    try:
        spec = _spec(
            "crashy",
            "print('boom s3cr3t-value', flush=True); raise SystemExit(7)",
            restart=RestartPolicy(max_restarts=2, backoff_initial=0.1),
        )
        echo = io.StringIO()
        sup = Supervisor([spec], tmp_path / "logs", echo=echo)
        sup.start()
        began = time.monotonic()
        _run_until(sup, lambda: sup.failed == ["crashy"])
        assert time.monotonic() - began >= 0.3  # 0.1 + 0.2 s of backoff
        state = sup.snapshot()[0]
        assert state["restarts"] == 2 and state["last_exit"] == 7 and state["state"] == "failed"
        sup.stop()
        log = (tmp_path / "logs" / "crashy.log").read_text()
        assert log.count("boom ***") == 3 and "s3cr3t" not in log
        assert "[crashy] boom ***" in echo.getvalue()
        assert (tmp_path / "logs").stat().st_mode & 0o777 == 0o700
    finally:
        forget_secrets()


def test_long_run_resets_budget(tmp_path: Path) -> None:
    clock_now = [0.0]
    spec = _spec("flaky", "raise SystemExit(1)", restart=RestartPolicy(1, 0.0, 0.0, 5.0))
    sup = Supervisor([spec], tmp_path, echo=io.StringIO(), clock=lambda: clock_now[0])
    sup.start()
    svc = sup.services[0]
    assert svc.proc is not None
    svc.proc.wait()
    clock_now[0] = 10.0  # it "ran" 10 s, longer than reset_after: not counted against it
    svc.restarts = 1
    sup.poll()
    assert svc.state == "backoff" and svc.restarts == 1
    sup.stop()


def test_stop_kills_whole_group_and_escalates(tmp_path: Path) -> None:
    code = (
        "import signal, subprocess, sys, time;"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print('up', flush=True); time.sleep(60)"
    )
    sup = Supervisor([_spec("stubborn", code, stop_timeout=0.5)], tmp_path, echo=io.StringIO())
    sup.start()
    pid = sup.services[0].proc.pid  # type: ignore[union-attr]
    _run_until(sup, lambda: len(group_members({pid})) == 2)
    began = time.monotonic()
    sup.stop()
    assert 0.5 <= time.monotonic() - began < 5
    assert group_members({pid}) == []
    assert sup.snapshot()[0]["state"] == "stopped"


def test_probe_marks_ready(tmp_path: Path) -> None:
    seen: list[str] = []

    def probe(url: str) -> bool:
        seen.append(url)
        return len(seen) >= 2

    spec = _spec("web", "import time; time.sleep(30)", probe_url="http://127.0.0.1:1/x")
    sup = Supervisor([spec], tmp_path, echo=io.StringIO(), probe=probe)
    sup.start()
    _run_until(sup, lambda: sup.services[0].ready)
    assert seen[0] == "http://127.0.0.1:1/x"
    sup.stop()


def test_a_slow_probe_never_blocks_the_snapshot(tmp_path: Path) -> None:
    import threading

    probing, release = threading.Event(), threading.Event()

    def probe(url: str) -> bool:  # a ComfyUI that takes its time to answer
        probing.set()
        release.wait(10)
        return True

    spec = _spec("web", "import time; time.sleep(30)", probe_url="http://127.0.0.1:1/x")
    sup = Supervisor([spec], tmp_path, echo=io.StringIO(), probe=probe)
    sup.start()
    poller = threading.Thread(target=sup.poll)
    poller.start()
    try:
        assert probing.wait(10)
        snaps: list[list[dict[str, object]]] = []
        reader = threading.Thread(target=lambda: snaps.append(sup.snapshot()))
        reader.start()  # what /status and /healthz do while the probe still waits
        reader.join(5)
        assert not reader.is_alive() and not release.is_set()
        (snap,) = snaps[0]
        assert snap["state"] == "running" and not snap["ready"]
    finally:
        release.set()
        poller.join(10)
    assert sup.snapshot()[0]["ready"]
    sup.stop()


def test_missing_binary_counts_as_a_failure(tmp_path: Path) -> None:
    spec = ServiceSpec("ghost", ("/nonexistent/bin",), ENV, restart=RestartPolicy(0))
    sup = Supervisor([spec], tmp_path, echo=io.StringIO())
    sup.start()
    assert sup.failed == ["ghost"] and sup.snapshot()[0]["last_exit"] == 127


def test_reap_orphans_collects_reparented_zombies() -> None:
    code = (
        "import os, sys\n"
        "from provisioner.runtime.services import become_subreaper, reap_orphans\n"
        "import subprocess, time\n"
        "assert become_subreaper()\n"
        "mid = subprocess.Popen([sys.executable, '-c', "
        '\'import subprocess, sys; p = subprocess.Popen([sys.executable, "-c", "pass"]); '
        "print(p.pid, flush=True)'], stdout=subprocess.PIPE, text=True)\n"
        "orphan = int(mid.stdout.readline()); mid.wait()\n"
        "deadline = time.time() + 10\n"
        "got = []\n"
        "while time.time() < deadline and orphan not in got:\n"
        "    got += reap_orphans({mid.pid}); time.sleep(0.05)\n"
        "print('reaped' if orphan in got else 'missed')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        check=True,
    ).stdout
    assert out.strip() == "reaped"

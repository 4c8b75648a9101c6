"""Many pods on one volume: real ``phoenix apply`` processes on one root, a counting server.

Acceptance (issue #13): four applies started at once fetch each file once (plus one resume of
the file whose holder was killed), never expose a partial file, all verify; a lease left by a
dead pod on another host is taken over; a live one is waited on, naming its holder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.state.lease_files import Claimer
from provisioner.state.volume_lock import Lease, this_host
from tests.support.civitai import LoopbackHub, Served, running_hub
from tests.support.cli import clean_env
from tests.support.desired import with_comfyui
from tests.support.downloads import blob, sha
from tests.support.paths import REPO

MiB = 1024 * 1024
#: The slow file: three of the engine's 4 MiB blocks, over ~4 s, so a kill lands mid-body.
BIG = ("big.bin", blob(12 * MiB, 1), 3 * MiB)
SMALL = [(f"small{i}.bin", blob(MiB + i, 10 + i), None) for i in range(4)]


@pytest.fixture
def hub() -> Iterator[LoopbackHub]:
    yield from running_hub()


def _manifest(hub: LoopbackHub, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    lines, files = ["version: 1", "models:"], {}
    for name, data, rate in [BIG, *SMALL]:
        url = hub.serve(name, Served(data=data, rate=rate))
        lines += [f"  - url: {url}", f"    sha256: {sha(data)}", "    type: loras"]
        files[name] = data
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(with_comfyui("\n".join(lines) + "\n"))
    return manifest, files


class _Pod:
    """One ``phoenix apply`` process; its output goes to files (a full pipe would stall it)."""

    def __init__(self, manifest: Path, root: Path, logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self._out = open(logs / "out", "w+")  # noqa: SIM115 (closed in result())
        self._err = open(logs / "err", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner", "apply", "--manifest", str(manifest),
             "--root", str(root)],
            env=clean_env(PYTHONPATH=str(REPO)), stdout=self._out, stderr=self._err, text=True,
        )  # fmt: skip
        self.pid = self.proc.pid

    def result(self, timeout: float = 180) -> tuple[int, str, str]:
        """Wait; (exit code, stdout, stderr)."""
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        texts = []
        for f in (self._out, self._err):
            f.seek(0)
            texts.append(f.read())
            f.close()
        return code, texts[0], texts[1]


#: The segmented engine's range probe (sources/segments.py ``probe``): one byte that tells
#: whether a URL of unknown size is large enough, and ranged, to fetch over several connections.
PROBE = "bytes=0-0"


def _gets(hub: LoopbackHub, name: str) -> list[tuple[str | None, int]]:
    """(Range header, body bytes) of each GET of ``name`` that fetched its content (no probe)."""
    return [
        (r.headers.get("Range"), r.body_bytes)
        for r in hub.requests_to(f"/files/{name}")
        if r.method == "GET" and r.headers.get("Range") != PROBE
    ]


def _probes(hub: LoopbackHub, name: str) -> list[int]:
    """Body bytes of each range probe of ``name``."""
    return [
        r.body_bytes
        for r in hub.requests_to(f"/files/{name}")
        if r.method == "GET" and r.headers.get("Range") == PROBE
    ]


class _Watcher(threading.Thread):
    """Polls every destination while the pods run: a file there must be whole and verified."""

    def __init__(self, root: Path, files: dict[str, bytes]) -> None:
        super().__init__(daemon=True)
        self.root, self.files = root, files
        self.stop = threading.Event()
        self.partial: list[str] = []

    def run(self) -> None:
        digests = {name: sha(data) for name, data in self.files.items()}
        while not self.stop.is_set():
            for name, data in self.files.items():
                dest = self.root / "models/loras" / name
                try:
                    body = dest.read_bytes()
                except FileNotFoundError:
                    continue
                if hashlib.sha256(body).hexdigest() != digests[name] or len(body) != len(data):
                    self.partial.append(name)
            time.sleep(0.02)


def test_four_pods_fetch_each_file_once_and_resume_a_killed_one(
    hub: LoopbackHub, tmp_path: Path
) -> None:
    manifest, files = _manifest(hub, tmp_path)
    root = tmp_path / "volume"
    watcher = _Watcher(root, files)
    watcher.start()
    pods = [_Pod(manifest, root, tmp_path / f"pod{i}") for i in range(4)]
    try:
        # the holder is mid-body on the big file once its .part holds a whole block
        deadline = time.monotonic() + 90
        while True:
            parts = list((root / ".phoenix/staging").rglob("*.part"))
            if parts and parts[0].stat().st_size >= 4 * MiB:
                break
            assert all(p.proc.poll() is None for p in pods), [p.result() for p in pods]
            assert time.monotonic() < deadline, "no pod ever got into the big download"
            time.sleep(0.02)
        holder = Lease.parse((root / ".phoenix/lock").read_text())
        assert holder is not None
        victim = next(p for p in pods if p.pid == holder.pid)
        victim.proc.send_signal(signal.SIGKILL)  # no handler runs: its lease and .part stay
    finally:
        outcomes = {p.pid: p.result() for p in pods}
        watcher.stop.set()
        watcher.join()

    assert outcomes.pop(victim.pid)[0] == -9
    assert [rc for rc, _, _ in outcomes.values()] == [0, 0, 0], outcomes
    for name, data in files.items():
        assert sha((root / "models/loras" / name).read_bytes()) == sha(data), name
    assert watcher.partial == []  # no pod ever saw a partial or unverified file in place
    # each small file once (the victim placed them before it died); the big one: the victim's
    # first request, then exactly one resume from where its .part ended
    for name, _, _ in SMALL:
        assert len(_gets(hub, name)) == 1, name
        assert _probes(hub, name) in ([], [1]), name  # at most one 1-byte probe, by one pod
    (first_range, first_sent), (resume_range, resume_sent) = _gets(hub, BIG[0])
    assert first_range is None and resume_range is not None
    resumed_from = int(resume_range.removeprefix("bytes=").rstrip("-"))
    assert resumed_from >= 4 * MiB
    assert resume_sent == len(BIG[1]) - resumed_from
    assert first_sent >= resumed_from  # nothing of what reached the volume was fetched again
    # one survivor took the dead lease over at once; the others waited for it, by name
    errs = [err for _, _, err in outcomes.values()]
    took = [e for e in errs if "taking over the volume lock of a holder that is gone" in e]
    assert len(took) == 1 and f"(pid {victim.pid} on host " in took[0]
    assert all("waiting for another phoenix apply on this volume (pid " in e for e in errs)
    assert [p for p in (root / ".phoenix/staging").rglob("*") if p.is_file()] == []
    assert not (root / ".phoenix/lock").exists()
    state = json.loads((root / ".phoenix/state.json").read_text())
    assert len(state["models"]) == len(files)


def _foreign(renewed: float, *, lease_s: float, heartbeat_s: float = 0.2) -> Lease:
    return Lease(
        token="f" * 32, hostname="pod-on-node-7", boot_id="0d4c-foreign-boot", pid_ns="1",
        pid=4242, pid_start="1", acquired=renewed, renewed=renewed, lease_s=lease_s,
        heartbeat_s=heartbeat_s,
    )  # fmt: skip


def _plant(root: Path, lease: Lease) -> Path:
    path = root / ".phoenix/lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lease.to_text())
    return path


def test_a_stale_lease_of_a_dead_pod_on_another_host_is_taken_over(
    hub: LoopbackHub, tmp_path: Path
) -> None:
    manifest, files = _manifest(hub, tmp_path)
    root = tmp_path / "volume"
    _plant(root, _foreign(time.time() - 600, lease_s=30.0))
    code, out, err = _Pod(manifest, root, tmp_path / "pod").result()
    assert code == 0, out + err
    assert "taking over the volume lock of a holder that is gone (pid 4242 on host " \
        "pod-on-node-7, renewed 6" in err  # fmt: skip
    for name, data in files.items():
        assert sha((root / "models/loras" / name).read_bytes()) == sha(data)


def test_a_live_lease_on_another_host_is_waited_on_naming_its_holder(
    hub: LoopbackHub, tmp_path: Path
) -> None:
    manifest, files = _manifest(hub, tmp_path)
    root = tmp_path / "volume"
    path = _plant(root, _foreign(time.time(), lease_s=1.0))
    alive = threading.Event()
    alive.set()

    def other_pod() -> None:  # renews well within its 1 s lease, like a live holder
        while alive.is_set():
            path.write_text(_foreign(time.time(), lease_s=1.0).to_text())
            time.sleep(0.2)

    beat = threading.Thread(target=other_pod, daemon=True)
    beat.start()
    pod = _Pod(manifest, root, tmp_path / "pod")
    try:
        time.sleep(6.0)  # six of its leases: a live one is never taken, however long
        assert pod.proc.poll() is None, pod.result()
        assert hub.requests_to("/files/") == []
    finally:
        alive.clear()
        beat.join()
    path.unlink()  # the other pod finished and released
    code, out, err = pod.result()
    assert code == 0, out + err
    assert "waiting for another phoenix apply on this volume (pid 4242 on host pod-on-node-7, " \
        "renewed " in err  # fmt: skip
    assert "taking over" not in err
    assert len(files) == sum(len(_gets(hub, name)) for name in files)


def test_an_apply_whose_lock_was_taken_over_places_nothing_more_and_exits_1(
    hub: LoopbackHub, tmp_path: Path
) -> None:
    """The fence: mid-download, another pod takes the lock over (as if this one had frozen).

    The download may finish into its staging folder, but is not placed; no state is written
    after the loss; the apply exits 1 naming the new holder. The take-over is done the way a
    waiter does it: through the lease's claim, then a new lease linked in its place.
    """
    manifest, _ = _manifest(hub, tmp_path)
    root = tmp_path / "volume"
    pod = _Pod(manifest, root, tmp_path / "pod")
    lock = root / ".phoenix/lock"
    try:
        deadline = time.monotonic() + 90
        while not any(p.stat().st_size > 0 for p in (root / ".phoenix/staging").rglob("*.part")):
            assert pod.proc.poll() is None, pod.result()
            assert time.monotonic() < deadline, "the apply never got into the big download"
            time.sleep(0.02)
        held = Lease.parse(lock.read_text())
        assert held is not None and held.pid == pod.pid
        new = _foreign(time.time(), lease_s=30.0)
        assert Claimer(new, this_host()).remove(lock, held.token)
        tmp = lock.with_name("lock.new-holder")
        tmp.write_text(new.to_text())
        os.link(tmp, lock)
        tmp.unlink()
        state_file = root / ".phoenix/state.json"
        state_then = state_file.read_bytes() if state_file.exists() else b""
        placed_then = sorted(p.name for p in (root / "models/loras").glob("*"))
    finally:
        code, out, err = pod.result()
    assert code == 1, out + err
    # seen by the guard or the heartbeat while the claim is there, or once the new lease is
    assert re.search(
        r"the volume lock (is being taken over by|was taken over \(now held by) pid 4242 on "
        r"host pod-on-node-7", err
    ), err
    assert "this apply stopped before its next change" in err
    assert "hint: another phoenix apply may be working on this volume now" in err
    assert "Traceback" not in err
    assert BIG[0] not in placed_then
    assert sorted(p.name for p in (root / "models/loras").glob("*")) == placed_then
    assert (state_file.read_bytes() if state_file.exists() else b"") == state_then
    if state_then:
        assert isinstance(json.loads(state_then), dict)  # whole, as it was before the loss
    assert Lease.parse(lock.read_text()) == new  # the fenced apply left the new lease alone
    # its verified download stays staged for the new holder to reuse or remove
    assert any(p.is_file() for p in (root / ".phoenix/staging").rglob("*"))

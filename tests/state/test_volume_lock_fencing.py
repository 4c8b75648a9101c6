"""The volume lock under races: two take-overs of one stale lease, a late renewal, the fence.

Each race is pinned by pausing one party at a seam (a wrapped ``Claimer.remove`` or the
``_before_removal`` hook of provisioner/state/lease_files.py) while the other runs to the end,
so the interleaving is the same on every run, however loaded the machine.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from provisioner.core.errors import LockLostError, StateError
from provisioner.core.layout import Layout
from provisioner.state import lease_files
from provisioner.state.lease import Lease, new_lease, this_host
from provisioner.state.lease_files import Claimer, beat_path, claim_path, read_lease
from provisioner.state.volume_lock import volume_lock


def _foreign(token: str = "f" * 32, *, renewed: float, hb: float = 0.02) -> Lease:
    """A lease of a pod on another node; with ``renewed`` long ago it is expired."""
    return Lease(
        token=token, hostname="pod-b", boot_id="boot-b", pid_ns="1", pid=4242, pid_start="1",
        acquired=renewed, renewed=renewed, lease_s=1.0, heartbeat_s=hb,
    )  # fmt: skip


def _plant(path: Path, lease: Lease) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lease.to_text())


def _link(path: Path, lease: Lease) -> None:
    """Take the free lock as another pod would: a whole file, linked (fails if it exists)."""
    tmp = path.with_name(f"{path.name}.{lease.token}.new")
    tmp.write_text(lease.to_text())
    os.link(tmp, path)
    tmp.unlink()


def test_a_waiter_that_judged_a_lease_stale_cannot_remove_its_successor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pins: A and B both judge the dead lease L0 stale; B takes over and holds; then A acts.

    The old take-over renamed whatever was at ``lock`` aside and put it back if it was not L0:
    here it moved B's live lease away, and a third pod linking ``lock`` in that window (or B's
    heartbeat finding no lease) made two holders. Now A may only remove the file holding L0's
    token, through L0's claim, after re-reading it: it finds B's lease and leaves it alone.
    """
    path = Layout(tmp_path).volume_lock
    stale = _foreign(renewed=time.time() - 3600)
    _plant(path, stale)
    judged, go = threading.Event(), threading.Event()
    real_remove = Claimer.remove
    outcome: dict[str, object] = {}

    def remove(self: Claimer, target: Path, key: str, depth: int = 0) -> bool:
        if threading.current_thread().name == "waiter-a" and "paused" not in outcome:
            outcome["paused"] = key  # A has judged L0 stale and is about to take it over
            judged.set()
            assert go.wait(10)
        removed = real_remove(self, target, key, depth)
        if threading.current_thread().name == "waiter-a":
            outcome.setdefault("a_removed", removed)
        return removed

    monkeypatch.setattr(Claimer, "remove", remove)

    def waiter_a() -> None:
        try:
            with volume_lock(Layout(tmp_path), timeout=0.5, poll=0.01):
                outcome["a_held"] = True
        except StateError as exc:
            outcome["a_error"] = exc.render()

    a = threading.Thread(target=waiter_a, name="waiter-a")
    a.start()
    assert judged.wait(10)
    assert outcome["paused"] == stale.token
    with volume_lock(Layout(tmp_path), timeout=5, poll=0.01) as b:  # B takes L0 over
        held = Lease.parse(path.read_text())
        assert held is not None and held.token == b.lease.token
        go.set()  # now A goes on with the take-over it decided before B took the lock
        a.join(10)
        assert Lease.parse(path.read_text()) == held  # B's lease was never moved
        b.check()  # and B is still the holder
    assert outcome["a_removed"] is False and "a_held" not in outcome
    assert "another phoenix apply (pid " in str(outcome["a_error"])


def test_of_two_claimants_of_one_stale_lease_exactly_one_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pins: A wins L0's claim and pauses just before the removal; B tries the same take-over.

    B finds the claim and backs off (the lease still there); after A's removal a new pod takes
    the lock, and B's retry of its old judgement finds another token and removes nothing.
    """
    path = Layout(tmp_path).volume_lock
    stale = _foreign(renewed=time.time() - 3600)
    _plant(path, stale)
    inside, go = threading.Event(), threading.Event()

    def pause(target: Path) -> None:
        if threading.current_thread().name == "claimant-a":
            inside.set()
            assert go.wait(10)

    monkeypatch.setattr(lease_files, "_before_removal", pause)
    me = this_host()
    results: dict[str, bool] = {}

    def claimant_a() -> None:
        results["a"] = Claimer(new_lease(1.0, 0.02), me).remove(path, stale.token)

    a = threading.Thread(target=claimant_a, name="claimant-a")
    a.start()
    assert inside.wait(10)
    assert claim_path(path, stale.token).exists()
    results["b"] = Claimer(new_lease(1.0, 0.02), me).remove(path, stale.token)
    assert results["b"] is False and Lease.parse(path.read_text()) == stale
    go.set()
    a.join(10)
    assert results["a"] is True and not path.exists()
    newcomer = _foreign("c" * 32, renewed=time.time())
    _link(path, newcomer)
    assert Claimer(new_lease(1.0, 0.02), me).remove(path, stale.token) is False
    assert Lease.parse(path.read_text()) == newcomer
    assert not claim_path(path, stale.token).exists()  # no claim is left behind


def test_a_late_renewal_never_touches_the_next_holders_lease(tmp_path: Path) -> None:
    """Pins: a holder frozen past its lease is taken over; then its heartbeat runs again.

    The old heartbeat checked the lease and then replaced the lock file: taken over between
    the two, it overwrote the new holder's lease with its own and both held. Renewals now go
    to the holder's own beat file; the lock file is only ever created whole and removed.
    """
    path = Layout(tmp_path).volume_lock
    with pytest.raises(LockLostError) as lost, volume_lock(
        Layout(tmp_path), heartbeat_s=0.02
    ) as frozen:
        # another pod judged it gone: it removes the lease through its claim and links its own
        assert Claimer(_foreign(renewed=time.time()), this_host()).remove(
            path, frozen.lease.token
        )
        successor = _foreign("c" * 32, renewed=time.time())
        _link(path, successor)
        taken = path.read_bytes()
        time.sleep(0.3)  # fifteen heartbeats of the old holder
        assert path.read_bytes() == taken
        assert not beat_path(path, frozen.lease.token).exists()
    assert path.read_bytes() == taken  # its release did not remove it either
    assert "now held by pid 4242 on host pod-b" in lost.value.render()


def test_the_guard_stops_the_holder_as_soon_as_its_lease_is_claimed(tmp_path: Path) -> None:
    path = Layout(tmp_path).volume_lock
    with pytest.raises(LockLostError) as lost, volume_lock(Layout(tmp_path)) as mine:
        mine.check()  # ours, unclaimed: goes on
        claim = claim_path(path, mine.lease.token)
        claim.write_text(_foreign(renewed=time.time()).to_text())  # a waiter judged us gone
        with pytest.raises(LockLostError, match="being taken over by pid 4242 on host pod-b"):
            mine.check()
        claim.unlink()
        with pytest.raises(LockLostError):
            mine.check()  # once lost, lost: the apply does not resume behind the new holder
    text = lost.value.render()
    assert text.startswith(f"{path}: the volume lock is being taken over by pid 4242")
    assert "this apply stopped before its next change" in text
    assert "hint: another phoenix apply may be working on this volume now" in text


def test_a_claim_left_by_a_claimant_that_died_is_cleared(tmp_path: Path) -> None:
    """A waiter killed between creating a claim and removing the lease must not block all."""
    path = Layout(tmp_path).volume_lock
    stale = _foreign(renewed=time.time() - 3600)
    _plant(path, stale)
    dead = new_lease(1.0, 0.02)
    gone = os.fork()
    if gone == 0:
        os._exit(0)
    os.waitpid(gone, 0)
    dead = Lease(**{**dead.__dict__, "pid": gone, "pid_start": None})
    claim_path(path, stale.token).write_text(dead.to_text())
    messages: list[str] = []
    with volume_lock(Layout(tmp_path), on_wait=messages.append, timeout=5, poll=0.01) as held:
        assert read_lease(path) == held.lease
    assert any("taking over" in m and "pid 4242 on host pod-b" in m for m in messages)
    assert sorted(p.name for p in path.parent.iterdir()) == []

"""Lock file reading, writing and drift messages (pure parts; resolution is in tests/actions)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provisioner.core.errors import LockFileError
from provisioner.state.lockfile import (
    LockFile,
    apply_lock,
    check_lock,
    desired_hash,
    load_lock,
    lock_drift,
    write_lock,
)
from tests.support.desired import FLUX_SET, desired_from


def _lock(**sections: object) -> str:
    return json.dumps({"version": 1, "desired_hash": "x", **sections})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "invalid lock file"),
        ('{"version": 9, "desired_hash": "x"}', "unsupported lock version 9"),
        ('{"version": 1}', "invalid lock file"),
        ('{"version": 1, "desired_hash": "x", "models": []}', "must be objects"),
        ("[]", "invalid lock file"),
        ("\udcff", "invalid lock file"),
        ("[" * 100_000, "invalid lock file"),
        (_lock(models={"m": {"files": "x"}}), "m: 'files' must be a list of objects"),
        (_lock(models={"m": {"files": [{"size": "x"}]}}), "m: size 'x' is not a byte count"),
        (_lock(models={"m": {"files": [{"sha256": "zz"}]}}), "m: sha256 'zz' is not 64 hex"),
        (_lock(models={"m": {"revision": 5}}), "m: 'revision' must be text"),
        (_lock(nodes={"node:x": {"commit": "main"}}), "node:x: 'commit' must be a 40-hex"),
    ],
)
def test_bad_lock_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x.lock.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(LockFileError, match=message) as info:
        load_lock(path)
    assert info.value.where == str(path)


def test_missing_lock_file_says_run_phoenix_lock(tmp_path: Path) -> None:
    with pytest.raises(LockFileError) as info:
        load_lock(tmp_path / "none.lock.json")
    assert "phoenix lock" in info.value.render()


def test_round_trip_and_mode(tmp_path: Path) -> None:
    lock = LockFile("abc", {"hf:a/b/c": {"source": "hf", "revision": "1" * 40, "files": []}})
    path = tmp_path / "m.lock.json"
    write_lock(lock, path)
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    loaded = load_lock(path)
    assert (loaded.desired_hash, loaded.models, loaded.path) == ("abc", lock.models, str(path))
    assert json.loads(path.read_text())["version"] == 1


def test_desired_hash_tracks_items_not_unrelated_settings(tmp_path: Path) -> None:
    comfy = f"comfyui:\n  repo: https://example.com/ComfyUI.git\n  ref: {'a' * 40}\n"
    base, _, _ = desired_from(tmp_path, FLUX_SET + comfy)
    same, _, _ = desired_from(tmp_path, FLUX_SET + comfy + "  port: 9999\n")
    other, _, _ = desired_from(
        tmp_path, FLUX_SET.replace("FLUX.1-dev", "FLUX.1-schnell") + comfy
    )
    env, _, _ = desired_from(tmp_path, FLUX_SET + comfy, {"CIVITAI_LORAS_TO_DOWNLOAD": "1"})
    package, _, _ = desired_from(tmp_path, FLUX_SET + comfy + "packages: [numpy<3]\n")
    moved, _, _ = desired_from(tmp_path, FLUX_SET + comfy.replace("a" * 40, "b" * 40))
    assert desired_hash(base) == desired_hash(same)
    hashes = {desired_hash(d) for d in (base, other, env, package, moved)}
    assert len(hashes) == 5  # packages and the ComfyUI ref are reviewed with the lock too


def test_drift_messages_and_pins(tmp_path: Path) -> None:
    desired, _, _ = desired_from(tmp_path, FLUX_SET)
    ae = "hf:black-forest-labs/FLUX.1-dev/ae.safetensors"
    pinned = {"source": "hf", "revision": "c" * 40, "folder": "vae",
              "files": [{"path": "ae.safetensors", "filename": "ae.safetensors",
                         "sha256": "d" * 64, "size": 335}]}  # fmt: skip
    lock = LockFile(desired_hash(desired), {ae: pinned, "civitai:1": {"files": []}})
    drift = lock_drift(desired, lock)
    assert "civitai:1 is locked but no longer desired" in drift
    assert sum("is not in the lock file" in d for d in drift) == 3
    model = next(m for m in apply_lock(desired, lock).models if m.id == ae)
    assert (model.sha256, model.size, model.pinned["revision"], model.pinned["path"]) == (
        "d" * 64, 335, "c" * 40, "ae.safetensors"
    )
    untouched = next(m for m in apply_lock(desired, lock).models if m.id != ae)
    assert untouched.pinned == {} and untouched.sha256 is None


def test_locked_apply_refuses_a_lock_missing_entries_even_with_the_right_hash(
    tmp_path: Path,
) -> None:
    desired, _, _ = desired_from(tmp_path, FLUX_SET)
    emptied = LockFile(desired_hash(desired), {}, {}, str(tmp_path / "m.lock.json"))
    with pytest.raises(LockFileError) as info:
        check_lock(desired, emptied)
    text = info.value.render()
    assert "is not in the lock file" in text and "phoenix lock" in text


def test_a_lock_from_before_packages_were_covered_keeps_its_pins(tmp_path: Path) -> None:
    comfy = f"comfyui:\n  repo: https://example.com/ComfyUI.git\n  ref: {'a' * 40}\n"
    desired, _, _ = desired_from(tmp_path, FLUX_SET + comfy)
    entries = {m.id: {"files": []} for m in desired.models}
    old = {"version": 1, "desired_hash": desired_hash(desired, 1), "models": entries}
    path = tmp_path / "old.lock.json"
    path.write_text(json.dumps(old))
    lock = load_lock(path)
    assert lock.hash_version == 1
    check_lock(desired, lock)  # written by the previous version: still valid
    changed, _, _ = desired_from(tmp_path, FLUX_SET + comfy + "packages: [numpy<3]\n")
    check_lock(changed, lock)  # a v1 lock never covered packages

    current = LockFile(desired_hash(desired), entries, {}, str(path))
    write_lock(current, path)
    reloaded = load_lock(path)
    assert reloaded.hash_version == 2
    check_lock(desired, reloaded)
    with pytest.raises(LockFileError, match="packages, the ComfyUI repo/ref or"):
        check_lock(changed, reloaded)

"""`phoenix doctor` and `phoenix cleanup` through the real CLI in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import FIXTURES, REPO
from tests.support.pod import HF_TOKEN


def _phoenix(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *argv],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor_json(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        f"version: 1\ncomfyui: {{path: '{FIXTURES / 'fake_comfyui'}', args: [--normalvram]}}\n"
    )
    env = {"HOME": str(tmp_path), "HUGGINGFACE_TOKEN": HF_TOKEN}
    done = _phoenix(
        "doctor", "--json", "--manifest", str(manifest), "--root", str(tmp_path), env=env
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["gpu"] is None and "--cpu" in report["flags"]["args"]
    assert report["flags"]["dropped"] == ["--normalvram"]
    assert report["versions"]["comfyui_version"] == "0.0.0-fake"
    assert HF_TOKEN not in done.stdout + done.stderr
    text = _phoenix("doctor", "--manifest", str(manifest), "--root", str(tmp_path), env=env)
    assert "torch/GPU check: -: no GPU" in text.stdout
    assert "None" not in text.stdout, text.stdout


def test_doctor_flags_follow_the_variant_chosen_for_the_vram(tmp_path: Path) -> None:
    # FLUX.2-dev on 32 GiB (an RTX 5090): the profile picks fp8, so no --bf16-unet is chosen,
    # exactly as phoenix run would launch (here with no GPU: CPU mode, and the variant named)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        f"version: 1\ncomfyui: {{path: '{FIXTURES / 'fake_comfyui'}'}}\n"
        "models:\n  - hf: black-forest-labs/FLUX.2-dev\n"
    )
    env = {"HOME": str(tmp_path), "PHOENIX_VRAM_GIB": "32"}
    done = _phoenix(
        "doctor", "--json", "--manifest", str(manifest), "--root", str(tmp_path), env=env
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(v["repo"], v["weights"]) for v in report["variants"]] == [
        ("black-forest-labs/FLUX.2-dev", "fp8")
    ]
    assert report["flags"]["weights"] == "fp8"
    text = _phoenix("doctor", "--manifest", str(manifest), "--root", str(tmp_path), env=env)
    assert "variant: black-forest-labs/FLUX.2-dev fp8 (fp8)" in text.stdout, text.stdout


def test_cleanup_dry_run_and_run(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "output").mkdir(parents=True)
    (root / "output" / "x.png").write_bytes(b"png")
    (root / ".phoenix" / "staging").mkdir(parents=True)
    (root / ".phoenix" / "staging" / "a.part").write_bytes(b"part")
    env = {"HOME": str(tmp_path / "home"), "PARANOID_MODE": "false"}
    dry = _phoenix("cleanup", "--root", str(root), "--dry-run", env=env)
    assert dry.returncode == 0 and "partial downloads" in dry.stdout
    assert "PARANOID" not in dry.stdout
    done = _phoenix("cleanup", "--root", str(root), "--paranoid", "--mode", "ephemeral", env=env)
    assert done.returncode == 0, done.stderr
    assert "removed 2 files" in done.stdout
    assert not (root / "output" / "x.png").exists()


def _plant_home(home: Path) -> list[Path]:
    planted = [
        home / ".cache" / "pip" / "http" / "blob",
        home / ".cache" / "uv" / "wheels" / "w.whl",
        home / ".cache" / "huggingface" / "token",
        home / ".bash_history",
        home / ".python_history",
    ]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"keep me")
    return planted


def test_cleanup_of_a_missing_root_fails_and_touches_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    planted = _plant_home(home)
    env = {"HOME": str(home)}
    for root in (tmp_path / "nonexistent", planted[-1]):  # missing, and a file
        done = _phoenix("cleanup", "--root", str(root), "--mode", "ephemeral", env=env)
        assert done.returncode == 1, done.stdout
        assert f"workspace root {root} is not an existing directory" in done.stderr
        assert "Traceback" not in done.stderr
    assert all(p.read_bytes() == b"keep me" for p in planted)


def test_plain_cleanup_never_touches_home_outside_the_image(tmp_path: Path) -> None:
    root, home = tmp_path / "ws", tmp_path / "home"
    (root / ".phoenix" / "staging").mkdir(parents=True)
    (root / ".phoenix" / "staging" / "a.part").write_bytes(b"part")
    planted = _plant_home(home)
    env = {"HOME": str(home), "HF_HOME": str(home / ".cache" / "huggingface")}
    dry = _phoenix("cleanup", "--root", str(root), "--mode", "ephemeral", "--dry-run", env=env)
    assert dry.returncode == 0 and str(home) not in dry.stdout
    assert "workspace only" in dry.stdout
    done = _phoenix("cleanup", "--root", str(root), "--mode", "ephemeral", "--paranoid", env=env)
    assert done.returncode == 0, done.stderr
    assert not (root / ".phoenix" / "staging" / "a.part").exists()
    assert all(p.read_bytes() == b"keep me" for p in planted)
    # asked for, or inside the image: the home-level files go
    done = _phoenix("cleanup", "--root", str(root), "--mode", "ephemeral", "--include-home",
                    env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not any(p.exists() for p in planted)
    planted = _plant_home(home)
    done = _phoenix("cleanup", "--root", str(root), "--mode", "ephemeral",
                    env={**env, "PHOENIX_IN_IMAGE": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not any(p.exists() for p in planted)


def test_cleanup_parses_its_env_flags_strictly(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    planted = tmp_path / "ws" / "output" / "x.png"
    planted.parent.mkdir()
    planted.write_bytes(b"png")
    for name in ("PARANOID_MODE", "USE_VOLUME"):
        env = {"HOME": str(tmp_path), name: "sometimes"}
        done = _phoenix("cleanup", "--root", str(tmp_path / "ws"), env=env)
        assert done.returncode == 1, done.stdout
        assert f"env:{name}: invalid value 'sometimes'" in done.stderr
        assert "Traceback" not in done.stderr
    env = {"HOME": str(tmp_path), "PARANOID_MODE": "on", "USE_VOLUME": "off"}
    done = _phoenix("cleanup", "--root", str(tmp_path / "ws"), env=env)
    assert done.returncode == 0, done.stderr
    assert "paranoid=True" in done.stdout and not planted.exists()


def test_cleanup_deadline_must_be_a_positive_number(tmp_path: Path) -> None:
    for bad in ("0", "-5", "soon", "nan", "inf"):
        done = _phoenix("cleanup", "--root", str(tmp_path), "--deadline", bad,
                        env={"HOME": str(tmp_path)})  # fmt: skip
        assert done.returncode == 1, (bad, done.stdout)
        assert "--deadline: expected a positive number of seconds" in done.stderr
    ok = _phoenix("cleanup", "--root", str(tmp_path), "--deadline", "2.5", "--dry-run",
                  env={"HOME": str(tmp_path)})  # fmt: skip
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("value", ["soon", "nan", "inf", "-1"])
def test_run_rejects_a_bad_grace_period(tmp_path: Path, value: str) -> None:
    done = _phoenix(
        "run", "--root", str(tmp_path), env={"HOME": str(tmp_path), "PHOENIX_STOP_GRACE": value}
    )
    assert done.returncode == 1
    expected = f"env:PHOENIX_STOP_GRACE: expected a positive number of seconds, found {value!r}"
    assert expected in done.stderr
    assert "Traceback" not in done.stderr

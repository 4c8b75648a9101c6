"""Reading installed distributions ahead of time (plan) and once per read-only pass."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provisioner.commands import plan as plan_cmd
from provisioner.core.layout import Layout
from provisioner.software import proc, pyenv
from tests.support.paths import REPO

PY = Path(sys.executable)


def _facts_calls(calls: list[list[str]]) -> list[list[str]]:
    return [c for c in calls if c[1:3] == ["-I", "-B"]]


def test_prefetched_answer_equals_a_direct_read_and_starts_one_child() -> None:
    direct = pyenv.installed_distributions(PY)
    with proc.recording() as calls, pyenv.prefetch_distributions(PY):
        ahead = pyenv.installed_distributions(PY)
        again = pyenv.installed_distributions(PY)  # consumed once; this one reads anew
    assert ahead == direct == again
    assert len(_facts_calls(calls)) == 2
    assert ahead.dists["pydantic"].version == direct.dists["pydantic"].version


def test_prefetch_for_another_interpreter_is_not_used_and_is_ended(tmp_path: Path) -> None:
    other = tmp_path / "bin" / "python"
    other.parent.mkdir()
    other.symlink_to(PY)
    with proc.recording() as calls, pyenv.prefetch_distributions(other):
        got = pyenv.installed_distributions(PY)
    assert got == pyenv.installed_distributions(PY)
    assert [c[0] for c in _facts_calls(calls)] == [str(other), str(PY)]


def test_unused_prefetch_child_is_killed_and_reaped() -> None:
    pending = proc.start([sys.executable, "-c", "import time; time.sleep(30)"], timeout=60)
    started = time.monotonic()
    pending.cancel()
    pending.cancel()  # idempotent
    assert time.monotonic() - started < 10
    popen = pending._popen
    assert popen is not None and popen.returncode is not None


def test_prefetch_outside_its_block_is_gone() -> None:
    with proc.recording() as calls:
        with pyenv.prefetch_distributions(PY):
            pass
        pyenv.installed_distributions(PY)
    assert len(_facts_calls(calls)) == 2  # the block's child was not kept for later


def test_shared_facts_read_each_interpreter_once_inside_the_block_only() -> None:
    with proc.recording() as calls:
        with pyenv.shared_facts():
            first = pyenv.installed_distributions(PY)
            second = pyenv.installed_distributions(PY)
        third = pyenv.installed_distributions(PY)
    assert first is second and first == third
    assert len(_facts_calls(calls)) == 2


def test_start_reports_like_run_for_missing_programs_and_timeouts(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-python"
    ran = proc.run([str(missing)])
    started = proc.start([str(missing)]).result()
    assert (started.returncode, started.output) == (ran.returncode, ran.output) == (127, ran.output)
    slow = proc.start([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    with pytest.raises(proc.Timeout):
        slow.result()
    ok = proc.start([sys.executable, "-c", "print('hi')"]).result()
    assert ok.ok and ok.output.strip() == "hi"


def test_started_child_gets_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    code = "import os; print(os.environ.get('HF_TOKEN', 'absent'))"
    assert proc.start([sys.executable, "-c", code]).result().output.strip() == "absent"
    assert os.environ["HF_TOKEN"] == "hf_secret_value"


def test_plan_prefetches_only_the_interpreter_it_reads(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("version: 1\npackages: [packaging>=20]\n")
    root = tmp_path / "ws"
    parser = argparse.ArgumentParser()
    plan_cmd.add_arguments(parser)
    args = parser.parse_args(["--manifest", str(manifest), "--root", str(root)])
    with proc.recording() as calls:
        assert plan_cmd.run(args) == 0
    facts = _facts_calls(calls)
    assert [c[0] for c in facts] == [str(pyenv.target_python(Layout(root)))]


def test_plan_of_the_embedded_default_on_a_fresh_root_starts_no_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("PHOENIX_MANIFEST", "EXTRA_PYTHON_PACKAGES", "PHOENIX_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(plan_cmd, "DEFAULT_COMFYUI", str(tmp_path / "no-comfyui"))
    parser = argparse.ArgumentParser()
    plan_cmd.add_arguments(parser)
    args = parser.parse_args(["--root", str(tmp_path / "ws")])
    assert not plan_cmd._likely_reads_packages(args, Layout(tmp_path / "ws"))
    with proc.recording() as calls:
        assert plan_cmd.run(args) == 0
    assert _facts_calls(calls) == []
    (tmp_path / "no-comfyui").mkdir()
    (tmp_path / "no-comfyui" / "requirements.txt").write_text("torch\n")
    assert plan_cmd._likely_reads_packages(args, Layout(tmp_path / "ws"))


_PROBE = """
import json, sys
from pathlib import Path
from provisioner.software import pyenv
from provisioner.software import proc
with proc.recording() as calls:
    here = pyenv.installed_distributions(Path(sys.executable))
child = proc.run(pyenv._facts_argv(Path(sys.executable)))
there = pyenv._distributions(json.loads(child.output.strip().splitlines()[-1]))
isolated = proc.run([sys.executable, "-I", "-c", "import sys, json; print(json.dumps(sys.path))"])
print(json.dumps({"children": len(calls), "equal": here == there, "names": sorted(here.dists),
                  "path_equal": pyenv._isolated_path() == json.loads(isolated.output)}))
"""


def _fake_dist(folder: Path, name: str) -> None:
    info = folder / f"{name}-9.9.egg-info"
    info.mkdir(parents=True)
    (info / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 9.9\n\n")


@pytest.mark.parametrize("how", ["-c", "safe-path"])
def test_running_interpreter_is_read_in_process_exactly_as_the_isolated_child(
    tmp_path: Path, how: str
) -> None:
    """Script folder/cwd and PYTHONPATH (with fake distributions) are left out, as with -I."""
    repo = REPO
    _fake_dist(tmp_path, "phoenix-fake-cwd")
    _fake_dist(tmp_path / "pp", "phoenix-fake-pythonpath")
    env = proc.child_env({"PYTHONPATH": os.pathsep.join([str(repo), str(tmp_path / "pp")])})
    env.pop("PYTHONHOME", None)
    flags = ["-P"] if how == "safe-path" else []
    done = subprocess.run(
        [sys.executable, *flags, "-c", _PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["children"] == 0 and got["equal"] and got["path_equal"]
    assert "pydantic" in got["names"]
    assert not {"phoenix-fake-cwd", "phoenix-fake-pythonpath"} & set(got["names"])


def test_a_changed_sys_path_falls_back_to_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", ["/somewhere/else", *sys.path])
    assert pyenv._isolated_path() is None
    with proc.recording() as calls:
        pyenv.installed_distributions(PY)
    assert len(_facts_calls(calls)) == 1

"""Reading a checkout's accepted flags with ast, and dropping what it would reject."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.runtime.cliargs import CliSpec, filter_args, load_cli_spec, parse_cli_spec
from tests.support.paths import FIXTURES

FAKE = FIXTURES / "fake_comfyui"
DATA = FIXTURES / "cli_flags"

SOURCE = """
import argparse
parser = argparse.ArgumentParser()
parser.add_argument("--listen", type=str, nargs="?", const="0.0.0.0")
parser.add_argument("--port", type=int, default=8188)
parser.add_argument("--fast", nargs="*")
parser.add_argument("--whitelist-custom-nodes", nargs="+", default=[])
parser.add_argument("-v", "--verbose-thing", action="count")
vram_group = parser.add_mutually_exclusive_group()
vram_group.add_argument("--highvram", action="store_true")
vram_group.add_argument("--lowvram", action="store_true")
if sys.argv:  # never executed by Phoenix
    raise SystemExit("imported!")
"""


@pytest.fixture
def spec() -> CliSpec:
    return parse_cli_spec(SOURCE)


def test_parse_collects_options_arity_and_groups(spec: CliSpec) -> None:
    assert set(spec.options) == {
        "--listen", "--port", "--fast", "--whitelist-custom-nodes", "-v", "--verbose-thing",
        "--highvram", "--lowvram",
    }  # fmt: skip
    assert spec.options["--listen"].arity == "?"
    assert spec.options["--port"].arity == 1
    assert spec.options["--verbose-thing"].arity == 0
    assert spec.options["--highvram"].group == spec.options["--lowvram"].group == "vram_group"
    assert spec.options["--port"].group is None


def test_unknown_flag_dropped_with_its_values(spec: CliSpec) -> None:
    out = filter_args(["--listen", "0.0.0.0", "--normalvram", "--bogus", "3", "--port", "1"], spec)
    assert out.args == ("--listen", "0.0.0.0", "--port", "1")
    assert out.dropped == ("--normalvram", "--bogus", "3")
    assert len(out.warnings) == 2 and "--normalvram" in out.warnings[0]


def test_values_nargs_and_inline(spec: CliSpec) -> None:
    out = filter_args(
        ["--fast", "--port=9", "--whitelist-custom-nodes", "a", "b", "--listen"], spec
    )
    assert out.args == ("--fast", "--port=9", "--whitelist-custom-nodes", "a", "b", "--listen")
    assert out.dropped == ()


def test_stray_positional_dropped(spec: CliSpec) -> None:
    out = filter_args(["--highvram", "oops", "--port", "2"], spec)
    assert out.args == ("--highvram", "--port", "2") and out.dropped == ("oops",)


def test_abbreviation_like_argparse(spec: CliSpec) -> None:
    assert filter_args(["--high"], spec).args == ("--high",)
    assert filter_args(["--l"], spec).dropped == ("--l",)  # ambiguous: --listen, --lowvram


def test_exclusive_group_last_wins(spec: CliSpec) -> None:
    out = filter_args(["--highvram", "--port", "1", "--lowvram", "--lowvram"], spec)
    assert out.args == ("--port", "1", "--lowvram")
    assert "--lowvram comes later" in out.warnings[0]


def test_fake_checkout_flags_exist_in_real_comfyui() -> None:
    spec = load_cli_spec(FAKE)
    assert spec is not None
    real = {
        line.strip()
        for line in (DATA / "comfyui_cli_flags.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert set(spec.options) <= real


def test_missing_or_broken_file(tmp_path: Path) -> None:
    assert load_cli_spec(tmp_path) is None
    (tmp_path / "comfy").mkdir()
    (tmp_path / "comfy" / "cli_args.py").write_text("def (:\n")
    assert load_cli_spec(tmp_path) is None


def test_filtered_args_are_accepted_by_a_real_argparse(tmp_path: Path) -> None:
    """The stand-in rejects unknown flags exactly like ComfyUI; filtered args pass it."""
    spec = load_cli_spec(FAKE)
    assert spec is not None
    raw = ["--normalvram", "--bf16-unet", "--fp16-unet", "--reserve-vram", "2", "--nope", "x"]
    code = "import sys; sys.path.insert(0, sys.argv.pop(1)); from comfy.cli_args import parser; "
    code += "parser.parse_args(sys.argv[1:])"
    bad = subprocess.run([sys.executable, "-c", code, str(FAKE), *raw], capture_output=True)
    assert bad.returncode == 2 and b"error:" in bad.stderr
    good = filter_args(raw, spec).args
    ok = subprocess.run([sys.executable, "-c", code, str(FAKE), *good], capture_output=True)
    assert ok.returncode == 0, ok.stderr

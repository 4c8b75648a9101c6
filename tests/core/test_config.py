"""config/versions.conf: the shipped file is valid, and the parser rejects every bad shape
with a ConfigError (exit code 1) that names ``file:line``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provisioner.core.config import REQUIRED_KEYS, load_versions, parse_versions
from provisioner.core.errors import ConfigError
from provisioner.core.resources import versions_conf

GOOD = """\
# comment
COMFYUI_REPO=https://github.com/Comfy-Org/ComfyUI.git
COMFYUI_COMMIT=637221995f7424a561bd825de3e61ea117dfe1e3
COMFYUI_VERSION=0.3.64
NGC_PYTORCH_TAG=25.03-py3
FILEBROWSER_VERSION=v2.63.23
FILEBROWSER_SHA256=b14db2bb8033caa3f80205eb6578b2ed0744ebd9e716b790bc4a9703ce909e88
"""


def test_shipped_file_parses_with_every_required_key() -> None:
    versions = load_versions()
    for key in REQUIRED_KEYS:
        assert versions.get(key), key
    assert re.fullmatch(r"[0-9a-f]{40}", versions.comfyui_commit)
    assert versions.comfyui_repo.startswith("https://github.com/")


def test_shipped_ngc_tag_is_a_dated_py3_release_with_cuda_12_8_or_later() -> None:
    tag = load_versions()["NGC_PYTORCH_TAG"]
    match = re.fullmatch(r"(\d\d)\.(\d\d)-py3", tag)
    assert match, tag
    # 25.01 is the first NGC PyTorch release built on CUDA 12.8 (native sm_120).
    assert (int(match[1]), int(match[2])) >= (25, 1)


def test_shipped_python_pins_are_exact_versions() -> None:
    versions = load_versions()
    pins = {k: v for k, v in versions.values.items() if k.endswith("_VERSION")}
    assert "HUGGINGFACE_HUB_VERSION" in pins and "NVIDIA_ML_PY_VERSION" in pins
    for key, value in pins.items():
        assert re.fullmatch(r"v?\d+(\.\d+)+", value), f"{key}={value}"


def test_load_versions_defaults_to_the_shipped_path() -> None:
    assert load_versions().path == str(versions_conf())


def test_unreadable_versions_conf_is_a_located_error(tmp_path: Path) -> None:
    binary = tmp_path / "versions.conf"
    binary.write_bytes(b"COMFYUI_COMMIT=\xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_versions(binary)
    text = info.value.render()
    assert text.startswith(f"{binary}: cannot read versions file: not UTF-8") and "hint:" in text


def _replace(key: str, value: str) -> str:
    return re.sub(rf"^{key}=.*$", f"{key}={value}", GOOD, flags=re.M)


BAD_CASES = [
    pytest.param(_replace("COMFYUI_COMMIT", "latest"), 3, "floats", id="floating-latest"),
    pytest.param(_replace("COMFYUI_COMMIT", "main"), 3, "floats", id="floating-branch"),
    pytest.param(_replace("NGC_PYTORCH_TAG", "latest-py3"), 5, "floats", id="latest-py3-tag"),
    pytest.param(_replace("COMFYUI_COMMIT", "6372219"), 3, "40-hex", id="short-commit"),
    pytest.param(
        _replace("COMFYUI_COMMIT", "637221995F7424A561BD825DE3E61EA117DFE1E3"),
        3,
        "40-hex",
        id="uppercase-commit",
    ),
    pytest.param(_replace("FILEBROWSER_SHA256", "abc123"), 7, "64 lowercase hex", id="short-sha"),
    pytest.param(_replace("COMFYUI_VERSION", ""), 4, "is empty", id="empty-value"),
    pytest.param(GOOD + "COMFYUI_VERSION=0.3.65\n", 8, "set twice", id="duplicate-key"),
    pytest.param(GOOD + "this is not a pair\n", 8, "expected KEY=VALUE", id="bad-line"),
    pytest.param(GOOD + "lower_key=1\n", 8, "UPPER_CASE", id="lowercase-key"),
    pytest.param(GOOD + "=1.0\n", 8, "expected KEY=VALUE", id="missing-key-name"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), BAD_CASES)
def test_bad_versions_conf_names_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_versions(text, "conf/v.conf")
    err = info.value
    assert err.exit_code == 1
    assert err.where == f"conf/v.conf:{line}"
    assert fragment in err.message
    assert err.render().startswith(f"conf/v.conf:{line}: ")


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_required_key_is_named(key: str) -> None:
    text = "\n".join(ln for ln in GOOD.splitlines() if not ln.startswith(f"{key}="))
    with pytest.raises(ConfigError) as info:
        parse_versions(text, "v.conf")
    assert key in info.value.message
    assert info.value.where == "v.conf"


def test_inline_comment_and_quotes_are_stripped() -> None:
    text = GOOD.replace("COMFYUI_VERSION=0.3.64", 'COMFYUI_VERSION="0.3.64"  # the tag')
    assert parse_versions(text)["COMFYUI_VERSION"] == "0.3.64"


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_versions(tmp_path / "absent.conf")
    assert info.value.where == str(tmp_path / "absent.conf")


def test_error_renders_as_one_compiler_style_line(tmp_path: Path) -> None:
    bad = tmp_path / "versions.conf"
    bad.write_text(_replace("COMFYUI_COMMIT", "abc"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_versions(bad)
    assert info.value.render().splitlines()[0] == (
        f"{bad}:3: COMFYUI_COMMIT must be a 40-hex commit, found 'abc'"
    )


def test_cli_exits_1_with_file_and_line_for_a_bad_shipped_file(tmp_path: Path) -> None:
    """Through the real CLI (PHOENIX_HOME points at a copy with a short commit): exit 1, the
    compiler-style message, no traceback."""
    from tests.support.cli import clean_env, run_phoenix

    (tmp_path / "config").mkdir()
    (tmp_path / "manifests").mkdir()  # what makes a folder a PHOENIX_HOME
    bad = tmp_path / "config" / "versions.conf"
    bad.write_text(_replace("COMFYUI_COMMIT", "6372219"), encoding="utf-8")
    proc = run_phoenix("template", env=clean_env(PHOENIX_HOME=str(tmp_path)))
    assert proc.returncode == 1
    assert f"{bad}:3: COMFYUI_COMMIT must be a 40-hex commit, found '6372219'" in proc.stderr
    assert "Traceback" not in proc.stderr

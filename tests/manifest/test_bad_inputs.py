"""Every bad input is a located message and exit 1, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.cli import main
from provisioner.manifest.envmap import ENV_VARS

# (manifest text, expected location prefix after the file name, expected words)
BAD_MANIFESTS = [
    ("version: 2\n", ":1:", "expected 1"),
    ("version: 1\nmodles: []\n", ":2:1", "did you mean 'models'"),
    ("version: 1\nstorage:\n  mode: volumes\n", ":3:9", "did you mean 'volume'"),
    ("version: 1\nstorage:\n  min_free_gb: -1\n", ":3:16", "≥ 0"),
    ("version: 1\nstorage: big\n", ":2:1", "expected a mapping"),
    ("version: 1\ncomfyui:\n  port: 99999\n", ":3:9", "≤ 65535"),
    ("version: 1\ncomfyui:\n  port: http\n", ":3:9", "expected an integer"),
    (
        "version: 1\ncomfyui:\n  performance:\n    attention: flashy\n",
        ":4:16",
        "did you mean 'flash'",
    ),
    ("version: 1\ncomfyui:\n  performance:\n    vram: medium\n", ":4:11", "expected one of"),
    ("version: 1\ncomfyui:\n  args: --lowvram\n", ":3:9", "expected a list"),
    ("version: 1\ncomfyui:\n  listen: not an ip\n", ":3:11", "expected"),
    ("version: 1\ncomfyui:\n  path: ''\n", ":3:9", "must not be empty"),
    ("version: 1\ncomfyui:\n  repo: ftp://x/y\n", ":3:9", "expected"),
    ("version: 1\nmodels: {}\n", ":2:1", "expected a list"),
    ("version: 1\nmodels:\n  - just-a-string\n", ":3:5", "expected a mapping"),
    ("version: 1\nmodels:\n  - huggingface: a/b\n", ":3:5", "did you mean 'hf'"),
    ("version: 1\nmodels:\n  - hf: a/b\n    civitai: 1\n", ":3:5", "exactly one source key"),
    ("version: 1\nmodels:\n  - hf: not-a-repo\n", ":3:9", "org/name"),
    ("version: 1\nmodels:\n  - hf: a/b\n    type: lora\n", ":4:11", "did you mean 'loras'"),
    ("version: 1\nmodels:\n  - hf: a/b\n    fiels: [x]\n", ":4:5", "did you mean 'files'"),
    ("version: 1\nmodels:\n  - hf: a/b\n    files: x.safetensors\n", ":4:12", "expected a list"),
    ("version: 1\nmodels:\n  - hf: a/b\n    sha256: abc\n", ":4:13", "64 hex"),
    ("version: 1\nmodels:\n  - hf: a/b\n    subdir: ../../etc\n", ":4:13", "expected"),
    ("version: 1\nmodels:\n  - hf: a/b\n    sha256: " + "a" * 64 + "\n", ":3:", "exactly one file"),
    ("version: 1\nmodels:\n  - civitai: ''\n", ":3:", "empty"),
    ("version: 1\nmodels:\n  - civitai: 1\n    format: safetensors\n", ":4:13", "SafeTensor"),
    ("version: 1\nmodels:\n  - url: https://x/y.bin\n", ":3:5", "missing required key 'sha256'"),
    ("version: 1\nmodels:\n  - url: ftp://x/y\n    sha256: " + "a" * 64 + "\n", ":3:10", "URL"),
    ("version: 1\nnodes:\n  - url: http://github.com/a/b\n", ":3:10", "git URL"),
    ("version: 1\nnodes:\n  - https://github.com/a/b\n", ":3:5", "expected a mapping"),
    ("version: 1\nnodes:\n  - url: https://u:pw@github.com/a/b\n", ":3:", "credentials"),
    (
        "version: 1\nnodes:\n  - url: https://u:pw@github.com/a/b\n    name: named\n",
        ":3:",
        "credentials",
    ),
    ("version: 1\nnodes:\n  - url: https://github.com/a/b\n    branch: main\n", ":4:5", "'ref'"),
    ("version: 1\npackages: numpy\n", ":2:1", "expected a list"),
    ("version: 1\npackages: ['numpy>=>1']\n", ":", "PEP 508"),
    ("version: 1\npackages: ['numpy<2', 'numpy>=2']\n", ":", "twice"),
    ("version: 1\nservices:\n  filebrowser:\n    port: 0\n", ":4:11", "≥ 1"),
    ("version: 1\nservices:\n  health:\n    port: 8188\n", ":4:5", "also comfyui.port"),
    (
        "version: 1\ncomfyui:\n  port: 8080\n",
        ":3:3",
        "services.filebrowser.port 8080 is also comfyui.port",
    ),
    ("version: 1\nservices:\n  filebrowser:\n    username: 'a b'\n", ":4:15", "expected"),
    ("version: 1\nsecurity:\n  paranoid: sometimes\n", ":3:13", "true or false"),
    ("version: 1\nsecurity:\n  user: Root!\n", ":3:9", "expected"),
    ("version: 1\nmodels:\n  - hf: a/b\n   files: [x]\n", ":4:", "YAML syntax error"),
    ("version: 1\nversion: 1\n", ":2:1", "duplicate key"),
    ("version: 1\x00\n", ":1:11", "control characters are not allowed (#x0000)"),
    ("version: 1\n? [a, b]\n: 1\n", ":2:3", "keys must be text, found a list"),
    ("- a\n- b\n", ":1:1", "expected a mapping of sections"),
    ("", ":1:1", "manifest is empty"),
    ("# only a comment\n", ":1:1", "manifest is empty"),
    ("version: 1\n1: x\n", ":", "keys must be text"),
    ("version: 1\nmodels: [\n", ":", "YAML syntax error"),
    ("version: 1\nmodels:\n  - civitai: abc\n", ":3:5", "cannot read 'abc'"),
    (
        "version: 1\nmodels:\n  - url: https://u:pw@example.com/x.bin\n    sha256: "
        + "a" * 64
        + "\n",
        ":3:5",
        "carries a credential",
    ),
    (
        "version: 1\nmodels:\n  - url: https://cdn.example/x.bin?X-Amz-Signature=s\n"
        "    sha256: " + "a" * 64 + "\n",
        ":3:5",
        "'X-Amz-Signature'",
    ),
    (
        "version: 1\nmodels:\n  - civitai: https://civitai.com/api/download/models/5?token=t\n",
        ":3:5",
        "CIVITAI_TOKEN",
    ),
    ("version: 1\n\tmodels: []\n", ":2:", "YAML"),
]

BAD_ENV = [
    ({"USE_VOLUME": "maybe"}, "env:USE_VOLUME", "true/false"),
    ({"PARANOID_MODE": "2"}, "env:PARANOID_MODE", "true/false"),
    ({"DEBUG_MODE": "verbose"}, "env:DEBUG_MODE", "true/false"),
    ({"HF_REPOS_TO_DOWNLOAD": "a/b FLUX"}, "env:HF_REPOS_TO_DOWNLOAD[1]", "org/repo"),
    (
        {"HF_REPOS_TO_DOWNLOAD": "https://example.com/a/b"},
        "env:HF_REPOS_TO_DOWNLOAD[0]",
        "huggingface",
    ),
    ({"CIVITAI_LORAS_TO_DOWNLOAD": "123,abc"}, "env:CIVITAI_LORAS_TO_DOWNLOAD[1]", "'abc'"),
    ({"CIVITAI_CHECKPOINTS_TO_DOWNLOAD": "1@x"}, "env:CIVITAI_CHECKPOINTS_TO_DOWNLOAD[0]", "AIR"),
    (
        {"CIVITAI_VAES_TO_DOWNLOAD": "https://x.com/models/1"},
        "env:CIVITAI_VAES_TO_DOWNLOAD[0]",
        "civitai.com",
    ),
    (
        {"COMFY_CUSTOM_NODE_GIT_URLS": "http://github.com/a/b"},
        "env:COMFY_CUSTOM_NODE_GIT_URLS[0]",
        "https",
    ),
    (
        {"COMFY_CUSTOM_NODE_GIT_URLS": "https://github.com/a/b https://t:x@github.com/c/d"},
        "env:COMFY_CUSTOM_NODE_GIT_URLS[1]",
        "credentials",
    ),
    (
        {"COMFY_CUSTOM_NODE_GIT_URLS": "https://github.com/a/x https://gitlab.com/b/x"},
        "env:COMFY_CUSTOM_NODE_GIT_URLS[1]",
        "twice",
    ),
    ({"EXTRA_PYTHON_PACKAGES": "numpy>=>1"}, "env:EXTRA_PYTHON_PACKAGES", "PEP 508"),
    ({"EXTRA_PYTHON_PACKAGES": "numpy<2 numpy>=2"}, "env:EXTRA_PYTHON_PACKAGES[1]", "twice"),
    ({"FB_USERNAME": "   "}, "env:FB_USERNAME", "empty"),
    ({"FB_PASSWORD": "p" * 73}, "env:FB_PASSWORD", "at most 72"),
    ({"PHOENIX_HOME": "/nonexistent"}, "env:PHOENIX_HOME", "has no manifests/ folder"),
    (
        {"CIVITAI_LORAS_TO_DOWNLOAD": "https://civitai.com/api/download/models/691639?token=abc"},
        "env:CIVITAI_LORAS_TO_DOWNLOAD[0]",
        "set CIVITAI_TOKEN instead",
    ),
    (
        {"HF_REPOS_TO_DOWNLOAD": "https://huggingface.co/a/b/resolve/main/x.bin?token=hf_x"},
        "env:HF_REPOS_TO_DOWNLOAD[0]",
        "set HUGGINGFACE_TOKEN instead",
    ),
    ({"FB_USERNAME": "bad name"}, "env:FB_USERNAME", "services.filebrowser.username"),
    ({"CIVITAI_API_BASE": "not a url"}, "env:CIVITAI_API_BASE", "expected an http(s) base URL"),
    ({"HF_ENDPOINT": "http://127.0.0.1:99999"}, "env:HF_ENDPOINT", "found 'http://127.0.0.1:99999'"),
    ({"PHOENIX_MANIFEST": "/nonexistent/manifest.yaml"}, "/nonexistent/manifest.yaml", "not found"),
]


@pytest.fixture
def clean_os_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var.name, raising=False)


@pytest.mark.usefixtures("clean_os_env")
@pytest.mark.parametrize(("text", "where", "words"), BAD_MANIFESTS)
def test_bad_manifest(
    text: str, where: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(text, encoding="utf-8")
    code = main(["plan", "--manifest", str(path), "--root", str(tmp_path / "root")])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"{path}{where}" in err
    assert words in err
    assert "Traceback" not in err


@pytest.mark.usefixtures("clean_os_env")
@pytest.mark.parametrize(("env", "where", "words"), BAD_ENV)
def test_bad_env(
    env: dict[str, str],
    where: str,
    words: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = main(["plan", "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert where in err
    assert words in err
    assert "Traceback" not in err


def test_table_is_large_enough() -> None:
    assert len(BAD_MANIFESTS) + len(BAD_ENV) >= 30


@pytest.mark.usefixtures("clean_os_env")
@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("dir", "is a directory"),
        ("missing", "not found"),
        ("binary", "not UTF-8"),
        ("huge", "at most"),
        ("bomb", "YAML aliases"),
        ("fifo", "is not a regular file"),
        ("deep", "nested too deeply"),
    ],
)
def test_bad_manifest_files(
    setup: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "manifest.yaml"
    if setup == "dir":
        path.mkdir()
    elif setup == "binary":
        path.write_bytes(b"version: 1\n\xff\xfe\x00")
    elif setup == "huge":
        path.write_text("# " + "x" * (2 * 1024 * 1024))
    elif setup == "bomb":
        lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
        for prev, name in zip("abcdef", "bcdefg", strict=True):
            lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
        path.write_text("\n".join(lines) + "\n")
    elif setup == "fifo":  # no writer: reading it would block for ever
        os.mkfifo(path)
    elif setup == "deep":
        path.write_text("version: 1\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    code = main(["validate", "--manifest", str(path)])
    err = capsys.readouterr().err
    assert code == 1
    assert str(path) in err and words in err


_yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30)
)
_yaml_values = st.recursive(
    _yaml_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "version",
                    "models",
                    "hf",
                    "civitai",
                    "url",
                    "files",
                    "type",
                    "nodes",
                    "packages",
                    "storage",
                    "mode",
                    "comfyui",
                    "port",
                    "sha256",
                    "services",
                    "x",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    doc=st.dictionaries(
        st.sampled_from(
            [
                "version",
                "models",
                "nodes",
                "packages",
                "storage",
                "comfyui",
                "services",
                "security",
                "bogus",
            ]
        ),
        _yaml_values,
        max_size=5,
    )
)
def test_random_manifests_never_traceback(
    doc: dict[str, object],
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ruamel.yaml import YAML

    path = tmp_path_factory.mktemp("hyp") / "manifest.yaml"
    with path.open("w") as fh:
        YAML(typ="safe").dump(doc, fh)
    saved = {v.name: os.environ.pop(v.name) for v in ENV_VARS if v.name in os.environ}
    try:
        code = main(["validate", "--manifest", str(path)])
    finally:
        os.environ.update(saved)
    err = capsys.readouterr().err
    assert code in (0, 1), err
    assert "internal error" not in err and "Traceback" not in err


_env_values = st.lists(
    st.sampled_from([*list("abc/@:,; \n0123456789.-_<>=~![]'\"htps"), "https://", "urn:air:"]),
    max_size=30,
).map("".join)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(
        [v.name for v in ENV_VARS if v.name not in {"PHOENIX_MANIFEST", "PHOENIX_ROOT"}]
    ),
    value=_env_values,
)
def test_random_env_values_never_traceback(name: str, value: str) -> None:
    from provisioner.core.errors import PhoenixError
    from provisioner.manifest.merge import load_desired

    try:
        load_desired(None, {name: value})
    except PhoenixError as exc:
        assert exc.where or exc.message

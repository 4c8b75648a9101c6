"""Every variable Phoenix reads is in the env table (so docs and the template list it)."""

from __future__ import annotations

import ast

from provisioner.manifest.envmap import ENV_VARS
from tests.support.paths import REPO

#: Variables of other programs that Phoenix reads or passes on, not Phoenix's own settings.
FOREIGN = {
    "HOME",
    "HF_HOME",
    "PATH",
    "PIP_CONSTRAINT",
    "UV_CONSTRAINT",
    "NO_COLOR",
    "USER",
    "TERM",
    "LANG",
    "TMPDIR",
    "XDG_CACHE_HOME",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHONHOME",
    "SHELL",
    "LOGNAME",
    "LC_ALL",
    "TZ",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
}


def _names_read() -> dict[str, str]:
    found = {}
    for path in (REPO / "provisioner").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"get", "pop", "getenv"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                target = ast.unparse(node.func.value)
                name = node.args[0].value
                if ("environ" in target or target in {"env", "os"}) and name.isupper():
                    found[name] = f"{path.relative_to(REPO)}:{node.lineno}"
    return found


def test_every_variable_read_is_documented() -> None:
    table = {v.name for v in ENV_VARS}
    missing = {name: where for name, where in _names_read().items() if name not in table | FOREIGN}
    assert not missing, f"add these to provisioner/manifest/envmap.py: {missing}"


def test_the_scan_sees_known_reads() -> None:
    names = _names_read()
    assert {"PHOENIX_MANIFEST", "PHOENIX_STOP_GRACE", "HUGGINGFACE_TOKEN"} <= set(names)

"""The package layering of provisioner/ holds and its imports have no cycles.

The layers and the checker live in tests/support/layering.py."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.layering import LAYERS, import_cycles, import_graph, layering_violations
from tests.support.paths import REPO

PACKAGE = REPO / "provisioner"


def test_every_package_has_a_layer() -> None:
    ranked = {pkg for layer in LAYERS for pkg in layer}
    present = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    present = {
        name
        for name in present
        if name not in {"__init__", "__pycache__", "py.typed"}
        and ((PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file())
    }
    assert present == ranked


def test_no_import_goes_up_or_sideways() -> None:
    assert layering_violations(import_graph(PACKAGE)) == []


def test_no_import_cycles() -> None:
    assert import_cycles(import_graph(PACKAGE)) == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_checker_catches_an_upward_import_a_sideways_one_and_a_cycle(tmp_path: Path) -> None:
    package = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low/__init__.py": "",
            "pkg/low/a.py": "from pkg.high import b\n",  # upward
            "pkg/high/__init__.py": "",
            "pkg/high/b.py": "from . import c\nimport pkg.low.a\n",  # relative import, fine
            "pkg/high/c.py": "from .b import x\nfrom pkg.side import d\n",  # cycle b<->c; sideways
            "pkg/side/__init__.py": "",
            "pkg/side/d.py": "from pkg import low\n",
        },
    )
    layers = (frozenset({"low"}), frozenset({"high", "side"}))
    graph = import_graph(package)
    assert graph["pkg.high.c"] == {"pkg.high.b", "pkg.side.d"}
    assert graph["pkg.high.b"] == {"pkg.high.c", "pkg.low.a"}
    assert layering_violations(graph, layers) == [
        "pkg.high.c -> pkg.side.d: sideways (high may not import side)",
        "pkg.low.a -> pkg.high.b: upward (low may not import high)",
    ]
    assert import_cycles(graph) == [["pkg.high.b", "pkg.high.c", "pkg.low.a"]]


def test_checker_names_a_package_missing_from_the_table(tmp_path: Path) -> None:
    package = _write(
        tmp_path,
        {"pkg/__init__.py": "", "pkg/new/x.py": "from pkg.low import y\n", "pkg/low/y.py": ""},
    )
    assert layering_violations(import_graph(package), (frozenset({"low"}),)) == [
        "pkg.new.x: package 'new' is not in LAYERS"
    ]


def test_docs_table_draws_the_same_layers() -> None:
    """docs/architecture.md's package table lists LAYERS in the same order, layer by layer."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawn = []
    for line in text.splitlines():
        match = re.match(r"\| (\d+) \| ([^|]+) \|", line)
        if match:
            names = re.findall(r"`([^`]+)`", match.group(2))
            drawn.append(frozenset(n.removesuffix("/").removesuffix(".py") for n in names))
    cli_and_main = [layer for layer in LAYERS if layer & {"cli", "__main__"}]
    expected = [layer for layer in LAYERS if layer not in cli_and_main]
    expected.append(frozenset().union(*cli_and_main))  # one row: `cli.py`, then `__main__.py`
    assert drawn == expected


def test_checker_sees_modules_loaded_by_name(tmp_path: Path) -> None:
    """A kinds table of dotted names, loaded with importlib, is checked like an import."""
    package = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low/__init__.py": "",
            "pkg/low/kinds.py": (
                "import importlib\n"
                'KIND_MODULES = ("pkg.low.ok", "pkg.high.b")\n'
                "def load(kind):\n"
                "    importlib.import_module(f'pkg.high.{kind}')\n"
                "    return [importlib.import_module(n) for n in KIND_MODULES]\n"
            ),
            "pkg/low/ok.py": 'NOT_A_MODULE = "pkg.low.missing"\n',
            "pkg/high/__init__.py": "",
            "pkg/high/b.py": "",
            "pkg/high/c.py": "",
        },
    )
    layers = (frozenset({"low"}), frozenset({"high"}))
    graph = import_graph(package)
    assert graph["pkg.low.kinds"] == {"pkg.low.ok", "pkg.high.b", "pkg.high.c"}
    assert graph["pkg.low.ok"] == set()
    assert layering_violations(graph, layers) == [
        "pkg.low.kinds -> pkg.high.b: upward (low may not import high)",
        "pkg.low.kinds -> pkg.high.c: upward (low may not import high)",
    ]


def test_the_real_kinds_tables_are_in_the_graph() -> None:
    from provisioner.actions.kinds import APPLY_MODULES
    from provisioner.plan.kinds import KIND_MODULES

    graph = import_graph(PACKAGE)
    assert set(KIND_MODULES) <= graph["provisioner.plan.kinds"]
    assert set(APPLY_MODULES.values()) <= graph["provisioner.actions.kinds"]
    assert "provisioner.commands.plan" in graph["provisioner.cli"]

"""The import layering of provisioner/, and an AST checker for it (used by tests/test_layering.py).

LAYERS is the one place the order lives; docs/architecture.md draws the same table. A module of
layer N may import modules of its own package and of any lower layer, never a higher one nor a
sibling in the same layer. The package root (provisioner/__init__.py, only __version__) is below
everything.

Modules loaded by name (``importlib.import_module``) count as imported: a string constant that
names one of the package's modules (``plan/kinds.py`` KIND_MODULES, ``actions/kinds.py``
APPLY_MODULES) is an import of it, and an f-string that starts with a package's dotted name
(``cli.py``'s ``f"provisioner.commands.{name}"``) imports every module of that package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

# Lowest first. A set is one layer whose members may not import each other.
LAYERS: Sequence[frozenset[str]] = tuple(
    frozenset(layer)
    for layer in (
        {"core"},
        {"manifest"},
        {"state"},
        {"software"},
        {"sources"},
        {"plan"},
        {"actions"},
        {"apply"},
        {"runtime", "generate"},
        {"commands"},
        {"cli"},
        {"__main__"},
    )
)


def module_name(root: Path, path: Path) -> str:
    """The dotted name of a .py file under the package directory root."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package at root -> the package's modules it imports (any depth)."""
    top = root.name
    files = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.split(".")[0] == top)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    anchor = anchor if is_pkg else anchor[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                if base.split(".")[0] != top:
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in files else base)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value in files:
                    targets.add(node.value)
            elif isinstance(node, ast.JoinedStr) and node.values:
                targets.update(_modules_named_by_prefix(node.values[0], files))
        targets.discard(name)
        graph[name] = {t for t in targets if t in files}
    return graph


def _modules_named_by_prefix(head: ast.expr, files: Mapping[str, Path]) -> set[str]:
    """The modules an f-string beginning ``"pkg.sub." ...`` can name: every module under pkg.sub."""
    if not (isinstance(head, ast.Constant) and isinstance(head.value, str)):
        return set()
    prefix = head.value
    if not prefix.endswith(".") or files.get(prefix[:-1], Path()).name != "__init__.py":
        return set()
    return {module for module in files if module.startswith(prefix)}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def layering_violations(
    graph: Mapping[str, Iterable[str]], layers: Sequence[frozenset[str]] = LAYERS
) -> list[str]:
    """One line per import that goes up the layers or sideways within one; unknown packages too."""
    rank = {pkg: i for i, layer in enumerate(layers) for pkg in layer}
    problems: list[str] = []
    for module, targets in sorted(graph.items()):
        source = _package(module)
        if source is None:
            continue
        if source not in rank:
            problems.append(f"{module}: package {source!r} is not in LAYERS")
            continue
        for target in sorted(targets):
            dest = _package(target)
            if dest is None or dest == source:
                continue
            if dest not in rank:
                problems.append(f"{module} -> {target}: package {dest!r} is not in LAYERS")
            elif rank[dest] >= rank[source]:
                how = "sideways" if rank[dest] == rank[source] else "upward"
                problems.append(f"{module} -> {target}: {how} ({source} may not import {dest})")
    return problems


def import_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    cycles.append(sorted(component))
    return cycles

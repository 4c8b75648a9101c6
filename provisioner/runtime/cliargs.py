"""The options a ComfyUI checkout accepts, read from its ``comfy/cli_args.py`` with ``ast``.

The file is parsed, never imported or run (importing it parses ``sys.argv`` and imports
ComfyUI). Flags differ between ComfyUI versions (``--normalvram`` was removed), so Phoenix
drops any flag the launched checkout does not know, with a warning, instead of letting
argparse stop ComfyUI at start.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: How many values an option takes: 0 (flag), 1, or "?"/"*"/"+" (argparse ``nargs``).
Arity = int | str


@dataclass(frozen=True)
class OptionSpec:
    """One accepted option string, how many values it takes, and its exclusive group."""

    name: str
    arity: Arity = 1
    group: str | None = None


@dataclass(frozen=True)
class CliSpec:
    """Everything ``parser.add_argument`` declares in one ``cli_args.py``."""

    options: dict[str, OptionSpec] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.options

    def resolve(self, token: str) -> OptionSpec | None:
        """The option ``token`` names: exact, or a unique prefix (argparse's ``allow_abbrev``)."""
        if token in self.options:
            return self.options[token]
        if not token.startswith("--"):
            return None
        matches = [spec for name, spec in self.options.items() if name.startswith(token)]
        return matches[0] if len(matches) == 1 else None


@dataclass(frozen=True)
class FilteredArgs:
    """Arguments after dropping what the checkout would reject, and why each was dropped."""

    args: tuple[str, ...]
    dropped: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


_ZERO_ACTIONS = {"store_true", "store_false", "store_const", "count", "help", "version"}


def _arity(call: ast.Call) -> Arity:
    keywords = {kw.arg: kw.value for kw in call.keywords if kw.arg}
    action = keywords.get("action")
    if isinstance(action, ast.Constant) and action.value in _ZERO_ACTIONS:
        return 0
    nargs = keywords.get("nargs")
    if isinstance(nargs, ast.Constant) and isinstance(nargs.value, (int, str)):
        return nargs.value
    return 1


def _receiver(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.value.id
    return None


def parse_cli_spec(source: str, filename: str = "comfy/cli_args.py") -> CliSpec:
    """Collect the option strings of every ``<name>.add_argument(...)`` call in ``source``.

    Names bound to ``<parser>.add_mutually_exclusive_group()`` become the options' ``group``.
    """
    tree = ast.parse(source, filename=filename)
    groups: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr == "add_mutually_exclusive_group"
        ):
            groups.update(t.id for t in node.targets if isinstance(t, ast.Name))
    options: dict[str, OptionSpec] = {}
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            continue
        receiver = _receiver(node)
        group = receiver if receiver in groups else None
        arity = _arity(node)
        for arg in node.args:
            if (
                isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and arg.value.startswith("-")
            ):
                options[arg.value] = OptionSpec(arg.value, arity, group)
    return CliSpec(options)


def load_cli_spec(comfy_path: Path) -> CliSpec | None:
    """Parse ``<comfy_path>/comfy/cli_args.py``; ``None`` when the file is absent or unreadable."""
    target = comfy_path / "comfy" / "cli_args.py"
    try:
        source = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return parse_cli_spec(source, str(target))
    except SyntaxError:
        return None


def _takes_value(arity: Arity, next_token: str | None) -> int:
    """How many of the following tokens belong to an option of ``arity`` (greedy, like argparse)."""
    if arity == 0 or next_token is None or next_token.startswith("-"):
        return 0 if arity in (0, "?", "*") else 1
    return 1 if arity in (1, "?") else -1 if arity in ("*", "+") else int(arity)


def filter_args(args: Sequence[str], spec: CliSpec) -> FilteredArgs:
    """Drop options ``spec`` does not accept (with the values that follow them).

    Where two kept options fall in one mutually exclusive group, the later one wins (the user's
    args come last), since ComfyUI's argparse would refuse both.
    """
    kept: list[list[str]] = []
    dropped: list[str] = []
    warnings: list[str] = []
    i = 0
    tokens = list(args)
    while i < len(tokens):
        token = tokens[i]
        name, has_inline, _ = token.partition("=")
        option = spec.resolve(name) if token.startswith("-") else None
        if option is None:
            j = i + 1
            while j < len(tokens) and not tokens[j].startswith("-"):
                j += 1
            chunk = tokens[i:j]
            dropped.extend(chunk)
            what = "option" if token.startswith("-") else "argument"
            warnings.append(
                f"dropped ComfyUI {what} {' '.join(chunk)!r}: this ComfyUI checkout does not "
                "accept it (see `python main.py --help` in the checkout)"
            )
            i = j
            continue
        if has_inline:
            kept.append([token])
            i += 1
            continue
        count = _takes_value(option.arity, tokens[i + 1] if i + 1 < len(tokens) else None)
        if count < 0:
            j = i + 1
            while j < len(tokens) and not tokens[j].startswith("-"):
                j += 1
        else:
            j = min(len(tokens), i + 1 + count)
        kept.append(tokens[i:j])
        i = j
    result: list[list[str]] = []
    for pos, chunk in enumerate(kept):
        option = spec.resolve(chunk[0].split("=", 1)[0])
        group = option.group if option else None
        later = [
            c[0]
            for c in kept[pos + 1 :]
            if group and (o := spec.resolve(c[0].split("=", 1)[0])) and o.group == group
        ]
        if later and later[0] != chunk[0]:
            dropped.extend(chunk)
            warnings.append(f"dropped {chunk[0]}: {later[0]} comes later and excludes it")
            continue
        if later:  # the same flag twice: keep the last one
            continue
        result.append(chunk)
    flat = tuple(token for chunk in result for token in chunk)
    return FilteredArgs(flat, tuple(dropped), tuple(warnings))

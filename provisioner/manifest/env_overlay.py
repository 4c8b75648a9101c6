"""The env overlay: what the environment adds to, or overrides in, the manifest's data.

Pure functions of the raw manifest data and the environment, driven by the env table
(:data:`provisioner.manifest.envmap.ENV_VARS`):
- a scalar variable with a manifest path (``FB_USERNAME``, ``USE_VOLUME``, ``PARANOID_MODE``,
  ``DEBUG_MODE``, ``PHOENIX_ROOT``, ...) overrides that key (:func:`apply_env_scalars`);
- a list variable's items become manifest entries appended to ``models``, ``nodes`` or
  ``packages``, each tagged ``env:NAME[i]`` (:func:`apply_env_lists`); a bad item is an
  :class:`EnvError` naming the variable and the item.
- ``HF_REPOS_TO_DOWNLOAD``'s default (the embedded ``manifests/default.yaml``) applies only when
  the variable is unset *and* the manifest lists no models.

:mod:`provisioner.manifest.merge` combines the result with the manifest and builds the
:class:`~provisioner.manifest.desired.DesiredState`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.core.errors import EnvError
from provisioner.core.requirements import split_requirements
from provisioner.manifest import items as parse
from provisioner.manifest.envmap import BY_NAME, ENV_VARS, parse_bool, split_list
from provisioner.manifest.load import load_manifest_file

DEFAULT_ORIGIN = "default"

#: The manifest's list sections, which env lists append to.
LIST_SECTIONS = ("models", "nodes", "packages")


@dataclass
class Sourced:
    """A raw list entry (manifest dict or env-made dict) with its origin."""

    data: Any
    origin: str


@dataclass
class Sections:
    """The raw entries of the manifest's list sections, in order, each with its origin."""

    models: list[Sourced] = field(default_factory=list)
    nodes: list[Sourced] = field(default_factory=list)
    packages: list[Sourced] = field(default_factory=list)


def apply_env_scalars(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Set every scalar variable's value at its manifest path in ``data`` (in place); returns
    ``{manifest path: "env:NAME"}`` for those set."""
    origins: dict[str, str] = {}
    for var in ENV_VARS:
        if var.manifest_path is None or var.kind.endswith("-list") or var.name not in env:
            continue
        raw = env[var.name]
        value: Any = raw
        if var.kind == "bool":
            if not raw.strip():
                continue
            try:
                flag = parse_bool(raw)
            except ValueError as exc:
                raise EnvError(
                    f"invalid value {raw!r}: {exc}",
                    where=f"env:{var.name}",
                    hint="or unset it to use the default",
                ) from None
            value = ("volume" if flag else "ephemeral") if var.name == "USE_VOLUME" else flag
        elif not raw.strip():
            raise EnvError(
                "is set but empty",
                where=f"env:{var.name}",
                hint=f"unset it or give a value ({var.help})",
            )
        elif var.kind == "int":
            if not raw.strip().isdigit():
                raise EnvError(
                    f"expected a whole number, found {raw!r}",
                    where=f"env:{var.name}",
                    hint=f"give a number such as {var.default} ({var.help})",
                )
            value = int(raw.strip())
        _set_path(data, var.manifest_path, value)
        origins[var.manifest_path] = f"env:{var.name}"
    return origins


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, last = dotted.split(".")
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
        node[key] = child = dict(child)
        node = child
    node[last] = value


def apply_env_lists(
    sections: Sections, env: Mapping[str, str], *, has_manifest_models: bool
) -> None:
    """Append every list variable's items to ``sections`` (in place), after the manifest's."""
    hf_var = BY_NAME["HF_REPOS_TO_DOWNLOAD"]
    if hf_var.name in env:
        sections.models.extend(_env_items(hf_var.name, env[hf_var.name], _hf_entry))
    elif not has_manifest_models:
        sections.models.extend(_default_models())
    for var in ENV_VARS:
        if var.name not in env:
            continue
        value = env[var.name]
        if var.kind == "civitai-list":
            sections.models.extend(_env_items(var.name, value, _civitai_entry(var.folder)))
        elif var.kind == "node-list":
            sections.nodes.extend(_env_items(var.name, value, _node_entry))
        elif var.kind == "package-list":
            sections.packages.extend(_env_packages(var.name, value))


def _env_items(name: str, value: str, entry: Callable[[str], Any]) -> list[Sourced]:
    """One manifest entry per list item, each tagged ``env:NAME[i]``; a bad item is an error
    naming the variable and the item."""
    out = []
    for i, item in enumerate(split_list(value)):
        where = f"env:{name}[{i}]"
        try:
            out.append(Sourced(entry(item), where))
        except ValueError as exc:  # shown without what looks like a credential (logs persist)
            shown = parse.without_credentials(item)[0]
            raise EnvError(
                f"invalid item {shown!r}: {str(exc).replace(item, shown)}",
                where=where,
                hint=f"fix or remove that item; {name}: {BY_NAME[name].help}",
            ) from None
    return out


def _hf_entry(item: str) -> dict[str, Any]:
    hf = parse.parse_hf_item(item)
    entry: dict[str, Any] = {"hf": hf.repo}
    if hf.revision:
        entry["revision"] = hf.revision
    if hf.pattern:
        entry["files"] = [hf.pattern]
    return entry


def _civitai_entry(folder: str | None) -> Callable[[str], dict[str, Any]]:
    def entry(item: str) -> dict[str, Any]:
        parse.parse_civitai_ref(item)
        return {"civitai": item, **({"type": folder} if folder else {})}

    return entry


def _node_entry(item: str) -> dict[str, Any]:
    node = parse.parse_node_item(item)
    return {"url": node.url, **({"ref": node.ref} if node.ref else {})}


def _env_packages(name: str, value: str) -> list[Sourced]:
    try:
        reqs = split_requirements(value)
    except ValueError as exc:
        raise EnvError(
            str(exc), where=f"env:{name}", hint="separate requirements with spaces or newlines"
        ) from None
    return [Sourced(req, f"env:{name}[{i}]") for i, req in enumerate(reqs)]


def _default_models() -> list[Sourced]:
    from provisioner.core.resources import manifests_dir

    doc = load_manifest_file(str(manifests_dir() / "default.yaml"))
    return [Sourced(entry, DEFAULT_ORIGIN) for entry in doc.data.get("models", [])]

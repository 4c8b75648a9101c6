"""Merge defaults < manifest < environment into a :class:`DesiredState`, recording origins.

Rules (documented in the README):
- Scalars from env vars override the manifest (``FB_USERNAME``, ``USE_VOLUME``, ``PARANOID_MODE``,
  ``DEBUG_MODE``, ``PHOENIX_ROOT``).
- Lists from env vars are appended to the manifest's lists; an item already present (same
  identity) is kept once, with the first origin.
- ``HF_REPOS_TO_DOWNLOAD``'s default (FLUX.1-dev, the embedded ``manifests/default.yaml``) applies
  only when the variable is unset *and* the manifest lists no models. Set it empty to get none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.core.errors import EnvError
from provisioner.core.redact import register_secret
from provisioner.core.requirements import split_requirements
from provisioner.manifest import items as parse
from provisioner.manifest import variants
from provisioner.manifest.desired import (
    DesiredModel,
    DesiredState,
    Secrets,
    VariantChoice,
)
from provisioner.manifest.envmap import BY_NAME, ENV_VARS, parse_bool, split_list
from provisioner.manifest.load import ManifestDoc, load_manifest_file
from provisioner.manifest.merge_software import conflict, desired_nodes, desired_packages
from provisioner.manifest.models import CivitaiModel, HFModel, Manifest, URLModel, is_glob
from provisioner.manifest.profiles import Profile, load_profile_file, load_profiles
from provisioner.manifest.validate import build_manifest, validate_doc

DEFAULT_ORIGIN = "default"


@dataclass
class _Sourced:
    """A raw list entry (manifest dict or env-made dict) with its origin."""

    data: Any
    origin: str


@dataclass
class _Merged:
    models: list[_Sourced] = field(default_factory=list)
    nodes: list[_Sourced] = field(default_factory=list)
    packages: list[_Sourced] = field(default_factory=list)


def read_secrets(env: Mapping[str, str]) -> Secrets:
    """Tokens and passwords from the environment, registered for redaction."""
    hf = env.get("HUGGINGFACE_TOKEN") or env.get("HF_TOKEN") or None
    civitai = env.get("CIVITAI_TOKEN") or None
    fb = env.get("FB_PASSWORD") or None
    for value in (hf, civitai, fb):
        register_secret(value)
    if fb is not None and len(fb.encode("utf-8", "surrogateescape")) > FB_PASSWORD_MAX_BYTES:
        raise EnvError(  # FileBrowser stores a bcrypt hash, which takes at most 72 bytes
            f"is {len(fb.encode('utf-8', 'surrogateescape'))} bytes long; FileBrowser's bcrypt "
            f"takes at most {FB_PASSWORD_MAX_BYTES}",
            where="env:FB_PASSWORD",
            hint="choose a shorter password (or unset it to get a generated one)",
        )
    return Secrets(hf_token=hf, civitai_token=civitai, fb_password=fb)


#: bcrypt (FileBrowser's password hash) reads at most this many bytes
FB_PASSWORD_MAX_BYTES = 72


def load_desired(
    manifest_path: str | None,
    env: Mapping[str, str],
    *,
    read_gpu: variants.GpuReader | None = None,
) -> tuple[DesiredState, Secrets]:
    """The desired state from an optional manifest file and the environment; ``read_gpu``
    (given by apply and run) reports the GPU whose VRAM variant selection uses unless
    PHOENIX_VRAM_GIB is set."""
    _check_endpoints(env)
    secrets = read_secrets(env)
    path = manifest_path or env.get("PHOENIX_MANIFEST") or None
    doc = load_manifest_file(path) if path else None
    user = validate_doc(doc) if doc else None
    return merge(doc, user, env, vram=variants.detect_vram(env, read_gpu)), secrets


def _check_endpoints(env: Mapping[str, str]) -> None:
    """Endpoint variables (``HF_ENDPOINT``, ``CIVITAI_API_BASE``) are http(s) base URLs; checked
    before any client library reads them (huggingface_hub does so when imported)."""
    from urllib.parse import urlsplit

    for var in ENV_VARS:
        raw = env.get(var.name, "")
        if var.kind != "url" or not raw:
            continue
        try:
            parts = urlsplit(raw)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            _ = parts.port  # raises ValueError when out of range or not a number
        except ValueError:
            ok = False
        if not ok:
            raise EnvError(
                f"expected an http(s) base URL such as {var.default}, found {raw!r}",
                where=f"env:{var.name}",
                hint=f"fix it, or unset it to use {var.default}",
            )


def merge(
    doc: ManifestDoc | None,
    user: Manifest | None,
    env: Mapping[str, str],
    *,
    vram: variants.VramFact | None = None,
) -> DesiredState:
    """Pure merge of a validated manifest (optional) with the environment; ``vram`` (the GPU's,
    unless PHOENIX_VRAM_GIB says otherwise) picks profile variants."""
    data: dict[str, Any] = dict(doc.data) if doc else {"version": 1}
    merged = _Merged()
    if doc:
        for key in ("models", "nodes", "packages"):
            for i, entry in enumerate(doc.data.get(key, []) or []):
                getattr(merged, key).append(_Sourced(entry, doc.where([key, i])))
    scalar_origins = _manifest_scalar_origins(doc) if doc else {}
    scalar_origins.update(_apply_env_scalars(data, env))
    warnings: list[str] = []
    _apply_env_lists(merged, env, has_manifest_models=bool(merged.models))
    data["models"] = [s.data for s in merged.models]
    data["nodes"] = [s.data for s in merged.nodes]
    data["packages"] = [s.data for s in merged.packages]
    if user is not None and doc is not None and data == doc.data:
        manifest = user  # validated already, and the environment changed nothing
    else:
        manifest = build_manifest(data, doc, scalar_origins)
    _check_ports(manifest, scalar_origins)
    choices: list[VariantChoice] = []
    vram = variants.vram_from_env(env) or vram
    models = _desired_models(manifest, merged, warnings, vram, choices)
    nodes = desired_nodes(manifest.nodes, [s.origin for s in merged.nodes])
    nodes += variants.needed_nodes(
        choices, load_profiles(), load_profile_file().nodes, (n.name for n in nodes)
    )
    packages = desired_packages(manifest.packages, [s.origin for s in merged.packages])
    if not (env.get("HUGGINGFACE_TOKEN") or env.get("HF_TOKEN")):
        warnings.extend(_gated_warnings(models))
    return DesiredState(
        manifest=manifest,
        models=tuple(models),
        nodes=tuple(nodes),
        packages=tuple(packages),
        scalar_origins=scalar_origins,
        warnings=tuple(warnings),
        manifest_path=doc.path if doc else None,
        variants=tuple(choices),
    )


def _check_ports(manifest: Manifest, origins: Mapping[str, str]) -> None:
    """Two services on one port: the second could never listen, and would restart forever."""
    services = manifest.services
    used = {manifest.comfyui.port: "comfyui.port"}
    for key, enabled, port in (
        ("services.filebrowser.port", services.filebrowser.enabled, services.filebrowser.port),
        ("services.health.port", services.health.enabled, services.health.port),
    ):
        if not enabled:
            continue
        if port in used:
            where = origins.get(key) or origins.get(used[port]) or "manifest"
            raise conflict(
                where, f"{key} {port} is also {used[port]}", "give each service its own port"
            )
        used[port] = key


def _manifest_scalar_origins(doc: ManifestDoc) -> dict[str, str]:
    """``file:line:col`` of every scalar setting the manifest spells out (outside lists)."""
    origins = {}
    for keypath in doc.positions:
        if keypath[0] not in _LIST_SECTIONS and all(isinstance(k, str) for k in keypath):
            origins[".".join(str(k) for k in keypath)] = doc.where(keypath)
    return origins


_LIST_SECTIONS = ("models", "nodes", "packages")


def _apply_env_scalars(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
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


def _apply_env_lists(merged: _Merged, env: Mapping[str, str], *, has_manifest_models: bool) -> None:
    hf_var = BY_NAME["HF_REPOS_TO_DOWNLOAD"]
    if hf_var.name in env:
        merged.models.extend(_env_items(hf_var.name, env[hf_var.name], _hf_entry))
    elif not has_manifest_models:
        merged.models.extend(_default_models())
    for var in ENV_VARS:
        if var.name not in env:
            continue
        value = env[var.name]
        if var.kind == "civitai-list":
            merged.models.extend(_env_items(var.name, value, _civitai_entry(var.folder)))
        elif var.kind == "node-list":
            merged.nodes.extend(_env_items(var.name, value, _node_entry))
        elif var.kind == "package-list":
            merged.packages.extend(_env_packages(var.name, value))


def _env_items(name: str, value: str, entry: Callable[[str], Any]) -> list[_Sourced]:
    """One manifest entry per list item, each tagged ``env:NAME[i]``; a bad item is an error
    naming the variable and the item."""
    out = []
    for i, item in enumerate(split_list(value)):
        where = f"env:{name}[{i}]"
        try:
            out.append(_Sourced(entry(item), where))
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


def _env_packages(name: str, value: str) -> list[_Sourced]:
    try:
        reqs = split_requirements(value)
    except ValueError as exc:
        raise EnvError(
            str(exc), where=f"env:{name}", hint="separate requirements with spaces or newlines"
        ) from None
    return [_Sourced(req, f"env:{name}[{i}]") for i, req in enumerate(reqs)]


def _default_models() -> list[_Sourced]:
    from provisioner.core.resources import manifests_dir

    doc = load_manifest_file(str(manifests_dir() / "default.yaml"))
    return [_Sourced(entry, DEFAULT_ORIGIN) for entry in doc.data.get("models", [])]


def _desired_models(
    manifest: Manifest,
    merged: _Merged,
    warnings: list[str],
    vram: variants.VramFact | None,
    choices: list[VariantChoice],
) -> list[DesiredModel]:
    profiles = load_profiles()
    out: dict[str, DesiredModel] = {}

    def add(model: DesiredModel) -> None:
        out.setdefault(model.id, model)

    pending = list(zip(manifest.models, (s.origin for s in merged.models), strict=True))
    while pending:
        entry, origin = pending.pop(0)
        if isinstance(entry, HFModel):
            profile = profiles.get(entry.hf)
            if entry.files is None and profile is not None and profile.variants:
                choices.append(_variant_models(entry, profile, vram, origin, add))
                continue
            if entry.variant is not None:
                raise conflict(origin, f"{entry.hf} has no variants", "remove 'variant'")
            if entry.files is None and profile is not None:
                for fname, profile_folder in profile.files.items():
                    add(_hf_file(entry, fname, entry.type or profile_folder, origin))
                pending[0:0] = [
                    (HFModel.model_validate(companion), f"{origin} (profile)")
                    for companion in profile.with_
                ]
                continue
            if entry.files is None:
                warnings.append(
                    f"{entry.hf} ({origin}) has no profile and no 'files': every *.safetensors "
                    "file of the repo will be fetched; list the files you need"
                )
            for pattern in entry.files or ["*.safetensors"]:
                folder = entry.type or (profile.files.get(pattern) if profile else None)
                if is_glob(pattern):
                    add(DesiredModel(f"hf:{entry.hf}:{pattern}", "hf", entry, origin, folder))
                else:
                    add(_hf_file(entry, pattern, folder, origin))
        elif isinstance(entry, CivitaiModel):
            try:
                ref = parse.parse_civitai_ref(entry.civitai)
            except ValueError as exc:
                raise conflict(
                    origin, f"civitai: {exc}", "see the Civitai forms in README"
                ) from None
            add(
                DesiredModel(
                    f"civitai:{ref.key}",
                    "civitai",
                    entry.model_copy(update={"civitai": ref.canonical}),
                    origin,
                    entry.type,
                    sha256=_lower(entry.sha256),
                )
            )
        else:
            add(_url_model(entry, origin))
    return list(out.values())


def _variant_models(
    entry: HFModel,
    profile: Profile,
    vram: variants.VramFact | None,
    origin: str,
    add: Callable[[DesiredModel], None],
) -> VariantChoice:
    try:
        choice, models = variants.expand(entry, profile, vram, origin)
    except variants.NoFit as exc:  # before any download: nothing is fetched for a misfit
        raise conflict(
            origin,
            f"{entry.hf}: {exc}",
            f"set --vram-gib / {variants.ENV_VAR} to the GPU you will run on, or pick a "
            "variant that fits (README: Profiles)",
        ) from None
    for model in models:
        add(model)
    return choice


def _hf_file(entry: HFModel, fname: str, folder: str | None, origin: str) -> DesiredModel:
    single = entry.model_copy(update={"files": [fname]})
    return DesiredModel(
        f"hf:{entry.hf}/{fname}",
        "hf",
        single,
        origin,
        folder,
        filename=fname.rsplit("/", 1)[-1],
        sha256=_lower(entry.sha256),
    )


def _url_model(entry: URLModel, origin: str) -> DesiredModel:
    from urllib.parse import unquote, urlsplit

    name = entry.name or unquote(urlsplit(entry.url).path.rsplit("/", 1)[-1]) or None
    return DesiredModel(
        f"url:{entry.url}", "url", entry, origin, entry.type, name, sha256=entry.sha256.lower()
    )


def _lower(value: str | None) -> str | None:
    return value.lower() if value else None


def _gated_warnings(models: list[DesiredModel]) -> list[str]:
    profiles = load_profiles()
    repos = sorted({m.entry.hf for m in models if isinstance(m.entry, HFModel)})
    return [
        f"{repo} is gated: set HUGGINGFACE_TOKEN (or HF_TOKEN) and accept the license at "
        f"https://huggingface.co/{repo}"
        for repo in repos
        if (p := profiles.get(repo)) is not None and p.gated
    ]

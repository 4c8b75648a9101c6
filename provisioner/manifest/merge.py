"""Merge defaults < manifest < environment into a :class:`DesiredState`, recording origins.

Rules (documented in the README):
- Scalars from env vars override the manifest; lists from env vars are appended to the
  manifest's lists (:mod:`provisioner.manifest.env_overlay` turns the variables into manifest
  data). An item already present (same identity) is kept once, with the first origin.
- ``HF_REPOS_TO_DOWNLOAD``'s default (FLUX.1-dev, the embedded ``manifests/default.yaml``) applies
  only when the variable is unset *and* the manifest lists no models. Set it empty to get none.

Here: reading secrets and checking endpoints, the merge itself, and expanding model entries
(profiles, variants) into :class:`DesiredModel`s; nodes and packages come from
:mod:`provisioner.manifest.merge_software`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from provisioner.core.errors import EnvError
from provisioner.core.redact import register_secret
from provisioner.manifest import items as parse
from provisioner.manifest import variants
from provisioner.manifest.desired import (
    DesiredModel,
    DesiredState,
    Secrets,
    VariantChoice,
)
from provisioner.manifest.env_overlay import (
    LIST_SECTIONS,
    Sections,
    Sourced,
    apply_env_lists,
    apply_env_scalars,
)
from provisioner.manifest.envmap import ENV_VARS
from provisioner.manifest.load import ManifestDoc, load_manifest_file
from provisioner.manifest.merge_software import conflict, desired_nodes, desired_packages
from provisioner.manifest.models import CivitaiModel, HFModel, Manifest, URLModel, is_glob
from provisioner.manifest.profiles import Profile, load_profile_file, load_profiles
from provisioner.manifest.validate import build_manifest, validate_doc


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
    merged = Sections()
    if doc:
        for key in LIST_SECTIONS:
            for i, entry in enumerate(doc.data.get(key, []) or []):
                getattr(merged, key).append(Sourced(entry, doc.where([key, i])))
    scalar_origins = _manifest_scalar_origins(doc) if doc else {}
    scalar_origins.update(apply_env_scalars(data, env))
    warnings: list[str] = []
    apply_env_lists(merged, env, has_manifest_models=bool(merged.models))
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
        if keypath[0] not in LIST_SECTIONS and all(isinstance(k, str) for k in keypath):
            origins[".".join(str(k) for k in keypath)] = doc.where(keypath)
    return origins


def _desired_models(
    manifest: Manifest,
    merged: Sections,
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

"""Resolve every floating reference of the desired state through the sources: the lock's content.

HF revision → commit + per-file LFS sha256 and size, Civitai id → version + file + sha256 + size +
download URL, node ref → commit (``git ls-remote``). ``phoenix lock`` writes the result with
:func:`provisioner.state.lockfile.write_lock`; nothing here writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from provisioner.core.errors import LockFileError, PhoenixError
from provisioner.manifest.desired import DesiredModel, DesiredState, Secrets, hf_selection
from provisioner.manifest.models import CivitaiModel, HFModel, URLModel
from provisioner.state.lockfile import LockFile, desired_hash


def resolve_lock(
    desired: DesiredState,
    secrets: Secrets,
    *,
    jobs: int = 4,
) -> tuple[LockFile, list[tuple[str, PhoenixError]]]:
    """Resolve every floating reference of ``desired``; returns the lock and per-item errors.

    Models resolve in parallel (HF commit + files, Civitai version + file); each node's ref
    resolves to a commit with :func:`provisioner.software.gitops.resolve_ref` (``git ls-remote``).
    """
    from provisioner.software.gitops import resolve_ref
    from provisioner.sources.huggingface import HFClient

    hf = HFClient(token=secrets.hf_token)
    session_box: list[Any] = []

    def session() -> Any:
        if not session_box:
            from provisioner.sources.http import make_session

            session_box.append(make_session())  # the token is scoped per request
        return session_box[0]

    errors: list[tuple[str, PhoenixError]] = []
    models: dict[str, dict[str, Any]] = {}

    def one(model: DesiredModel) -> None:
        try:
            models[model.id] = _resolve_model(model, hf, session, secrets)
        except PhoenixError as exc:
            errors.append((model.id, exc))

    if any(m.source == "civitai" for m in desired.models):
        session()  # create it once, before the threads share it
    from concurrent.futures import ThreadPoolExecutor  # resolving only; plan stays light

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, desired.models))
    nodes: dict[str, dict[str, Any]] = {}
    for node in desired.nodes:
        try:
            commit = resolve_ref(node.spec.url, node.spec.ref)
            nodes[node.id] = {"url": node.spec.url, "ref": node.spec.ref, "commit": commit}
        except PhoenixError as exc:
            errors.append((node.id, exc))
    for s in session_box:
        s.close()
    pinned_models, pinned_nodes = dict(sorted(models.items())), dict(sorted(nodes.items()))
    return LockFile(desired_hash(desired), pinned_models, pinned_nodes), errors


def _resolve_model(
    model: DesiredModel, hf: Any, session: Callable[[], Any], secrets: Secrets
) -> dict[str, Any]:
    entry = model.entry
    if isinstance(entry, HFModel):
        res = hf.resolve(entry.hf, entry.revision, hf_selection(model))
        if model.sha256 and len(res.files) == 1 and res.files[0].sha256 not in (
            None, model.sha256.lower()
        ):  # fmt: skip
            raise LockFileError(
                f"{model.id}: the manifest's sha256 differs from the Hub's LFS oid "
                f"{res.files[0].sha256}",
                hint="update 'sha256' in the manifest if the new file is trusted",
            )
        return {
            "source": "hf",
            "repo": entry.hf,
            "requested_revision": entry.revision or "main",
            "revision": res.commit,
            "folder": model.folder,
            "files": [
                {
                    "path": f.path,
                    "filename": f.name,
                    "sha256": f.sha256 or (model.sha256 if len(res.files) == 1 else None),
                    "size": f.size,
                    "blob_id": f.blob_id,
                }
                for f in res.files
            ],
        }
    if isinstance(entry, CivitaiModel):
        from provisioner.sources.civitai import civitai_api_base, resolve_civitai

        file = resolve_civitai(
            entry, session=session(), api_base=civitai_api_base(), token=secrets.civitai_token
        )
        return {
            "source": "civitai",
            "model_id": file.model_id,
            "version_id": file.version_id,
            "file_id": file.file_id,
            "model_name": file.model_name,
            "version_name": file.version_name,
            "download_url": file.download_url,
            "folder": model.folder or file.folder,
            "files": [{"filename": file.name, "sha256": file.sha256, "size": file.size}],
        }
    assert isinstance(entry, URLModel)
    return {
        "source": "url",
        "url": entry.url,
        "folder": model.folder,
        "files": [{"filename": model.filename, "sha256": entry.sha256.lower(), "size": None}],
    }

"""Resolve one model change into file jobs: per source, what to fetch and what it must hash to.

HF revision → commit + files + LFS sha256 (``sources/huggingface.py``), Civitai id → version +
file + sha256 (``sources/civitai.py``), URL → name (``sources/url.py``); a lock file's pins
replace resolution (no API call). Each :class:`FileJob`'s ``fetch`` downloads into staging and
verifies; :mod:`provisioner.actions.model_apply` runs the jobs.

Tokens: the HF token goes only to huggingface_hub; the Civitai token only into the per-request
auth scoped to the API host (the CDN redirect never gets it); plain URLs get no credentials.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from provisioner.actions.model_runner import FileJob, Resolved, Runner, check_own_destinations
from provisioner.core.errors import SourceError
from provisioner.manifest.desired import DesiredModel, hf_selection, request_key
from provisioner.manifest.models import CivitaiModel, HFModel, URLModel
from provisioner.plan.change import Change
from provisioner.sources.placement import hash_file


def resolve(change: Change, runner: Runner) -> Resolved:
    """Turn one create/update change into file jobs (network only when nothing is pinned)."""
    model = change.item
    assert isinstance(model, DesiredModel)
    resolved = {"request": request_key(model)}
    entry = model.entry
    if isinstance(entry, HFModel):
        jobs = _resolve_hf(model, entry, runner, resolved)
        check_own_destinations(model.id, entry.subdir, jobs)
        return Resolved(change, model, jobs, resolved)
    if isinstance(entry, CivitaiModel):
        return Resolved(change, model, [_resolve_civitai(model, entry, runner, resolved)], resolved)
    assert isinstance(entry, URLModel)
    return Resolved(change, model, [_resolve_url(model, entry, runner, resolved)], resolved)


def _resolve_hf(
    model: DesiredModel, entry: HFModel, runner: Runner, resolved: dict[str, str]
) -> list[FileJob]:
    from provisioner.sources.huggingface import HFFile

    client = runner.hf()
    pinned_rev = model.pinned.get("revision")
    locked_files = _locked_hf_files(model)
    if pinned_rev and locked_files:
        # a lock file pinned every file with its hash: no resolution call
        files = [HFFile(entry.hf, path, pinned_rev, size, sha) for path, sha, size in locked_files]
        commit = pinned_rev
    else:
        res = client.resolve(entry.hf, pinned_rev or entry.revision, hf_selection(model))
        files, commit = list(res.files), res.commit
    resolved.update(
        {"repo": entry.hf, "revision": commit, "requested_revision": entry.revision or "main"}
    )
    if len(files) == 1:
        resolved["path"] = files[0].path
    else:
        resolved["paths"] = json.dumps([f.path for f in files])
    single_sha = model.sha256 if len(files) == 1 else None
    jobs = []
    for f in files:
        expected = single_sha or f.sha256

        def fetch(
            staging: Path, f: HFFile = f, expected: str | None = single_sha
        ) -> tuple[Path, str]:
            staged = client.download(
                f, staging, expected_sha256=expected, progress=runner.progress, cancel=runner.cancel
            )
            return staged, expected or f.sha256 or hash_file(staged).sha256

        jobs.append(
            FileJob(
                label=f"hf:{f.repo}/{f.path}",
                filename=_safe(f.name),
                sha256=expected,
                size=f.size,
                folder=model.folder,
                source_folder=None,
                fetch=fetch,
                staging_key=_key(f"hf:{f.repo}@{f.commit}/{f.path}"),
            )
        )
    return jobs


def _locked_hf_files(model: DesiredModel) -> list[tuple[str, str, int | None]]:
    """(path, sha256, size) of every file a lock pinned for ``model``; [] if any lacks a hash."""
    pins = model.pinned
    if pins.get("path") and model.sha256:
        return [(pins["path"], model.sha256.lower(), model.size)]
    if not pins.get("files"):
        return []
    out = []
    for f in json.loads(pins["files"]):
        if not f.get("sha256"):
            return []
        out.append((str(f["path"]), str(f["sha256"]).lower(), f.get("size")))
    return out


def _resolve_civitai(
    model: DesiredModel, entry: CivitaiModel, runner: Runner, resolved: dict[str, str]
) -> FileJob:
    from provisioner.sources.civitai import CivitaiFile, civitai_api_base, resolve_civitai

    pins = model.pinned
    if pins.get("download_url") and model.sha256 and model.filename:
        file = CivitaiFile(
            model_id=int(pins.get("model_id") or 0),
            version_id=int(pins.get("version_id") or 0),
            file_id=int(pins.get("file_id") or 0),
            name=_safe(model.filename),
            download_url=pins["download_url"],
            sha256=model.sha256.lower(),
            size=model.size,
            folder=model.folder,
            model_name=pins.get("model_name", ""),
            version_name=pins.get("version_name", ""),
        )
    else:
        file = resolve_civitai(
            entry,
            session=runner.session(),
            api_base=civitai_api_base(),
            token=runner.ctx.secrets.civitai_token,
        )
    resolved.update(
        {
            "model_id": str(file.model_id),
            "version_id": str(file.version_id),
            "file_id": str(file.file_id),
            "download_url": file.download_url,
            "model_name": file.model_name,
            "version_name": file.version_name,
        }
    )
    label = f"civitai:{file.model_id}@{file.version_id}"

    def fetch(staging: Path) -> tuple[Path, str]:
        from provisioner.sources.civitai import civitai_api_base, download_civitai_file

        result = download_civitai_file(
            file,
            staging / f"{file.sha256}.ready",
            session=runner.session(),
            staging=staging,
            api_base=civitai_api_base(),
            token=runner.ctx.secrets.civitai_token,  # scoped to the API host per transfer
            progress=runner.progress,
            cancel=runner.cancel,
            connections=runner.ctx.download_connections,
        )
        return result.path, result.sha256

    return FileJob(
        label=label,
        filename=file.name,
        sha256=file.sha256,
        size=file.size,
        folder=model.folder if entry.type else None,
        source_folder=file.folder,
        fetch=fetch,
        staging_key=_key(f"{label}/{file.file_id}"),
    )


def _resolve_url(
    model: DesiredModel, entry: URLModel, runner: Runner, resolved: dict[str, str]
) -> FileJob:
    from provisioner.sources.url import resolve_url

    file = resolve_url(entry)
    resolved["url"] = entry.url

    def fetch(staging: Path) -> tuple[Path, str]:
        from provisioner.sources.download import download
        from provisioner.sources.http import NoAuth

        result = download(
            file.url,
            staging / f"{file.sha256}.ready",
            staging=staging,
            expected_sha256=file.sha256,
            session=runner.session(),
            expected_size=model.size,
            progress=runner.progress,
            label=f"url:{file.name}",
            auth=NoAuth(),  # a plain URL never gets a credential
            cancel=runner.cancel,
            connections=runner.ctx.download_connections,
        )
        return result.path, result.sha256

    return FileJob(
        label=f"url:{file.name}",
        filename=file.name,
        sha256=file.sha256,
        size=model.size,
        folder=model.folder,
        source_folder=None,
        fetch=fetch,
        staging_key=_key(f"url:{entry.url}"),
    )


def _safe(name: str) -> str:
    from provisioner.sources.names import safe_filename

    try:
        return safe_filename(name)
    except ValueError as exc:
        raise SourceError(str(exc), hint="set 'name' on the entry") from exc


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

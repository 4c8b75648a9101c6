"""Apply model changes: re-check, resolve, preflight, fetch + verify, organize, place, record.

The pipeline for one batch of changes (``apply``):

1. **re-check** each change against the state (another apply may have placed it meanwhile);
2. **resolve** in parallel: HF revision → commit + files + LFS sha256, Civitai id → version +
   file + sha256, URL → name; a lock file's pins replace resolution (no API call);
3. **preflight** the free space against the byte total of what will really be fetched;
4. **fetch** in parallel (``ctx.jobs``): a file whose SHA256 is already placed is hard-linked,
   anything else is downloaded into ``.phoenix/staging`` and verified against its trusted hash;
5. **organize + place**: route to ``models/<folder>/`` (header-based routing reads the staged
   file), confine the name, ``os.replace`` into place;
6. **record** the model in the state file; one item's failure never stops the others.

Steps 1-3 and 6 are here, with the resolution per source (each calls its ``sources/`` module);
steps 4-5 for one file are :func:`provisioner.actions.model_place.obtain`; what the worker
threads share (sessions, dedup by SHA256, destination claims) is
:class:`provisioner.actions.model_runner.Runner`. The facts and the diff are
:mod:`provisioner.plan.models`.

Tokens: the HF token goes only to huggingface_hub; the Civitai token only into the per-request
auth scoped to the API host (the CDN redirect never gets it); plain URLs get no credentials.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from provisioner.actions.base import ApplyContext
from provisioner.actions.model_place import destination, obtain
from provisioner.actions.model_runner import (
    FileJob,
    Placed,
    Resolved,
    Runner,
    check_own_destinations,
    trusted,
)
from provisioner.core.errors import PhoenixError, SourceError
from provisioner.core.units import human_bytes
from provisioner.manifest.desired import DesiredModel, hf_selection, request_key
from provisioner.manifest.models import CivitaiModel, HFModel, URLModel
from provisioner.plan.change import Change, ItemResult
from provisioner.plan.models import KIND
from provisioner.sources.organizer import folder_from_name
from provisioner.sources.placement import hash_file
from provisioner.state.store import ModelRecord, file_record


# -- resolution -----------------------------------------------------------------------------
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

        def fetch(staging: Path, f: HFFile = f, expected: str | None = single_sha) -> tuple[
            Path, str
        ]:
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


def _run(res: Resolved, runner: Runner) -> ItemResult:
    """Fetch, place and record every file of one resolved model."""
    model = res.model
    root = runner.ctx.layout.root
    placed: list[Placed] = []
    for job in res.files:
        placed.append(obtain(job, res, runner))
    files = tuple(file_record(root, p.path, p.sha256) for p in placed)
    previous = runner.ctx.store.state.models.get(model.id)
    runner.ctx.store.put_model(ModelRecord(model.id, model.source, files, dict(res.resolved)))
    if previous is not None:
        _remove_stale(previous, {f.path for f in files}, runner.ctx)
    moved = sum(p.transferred for p in placed)
    where = ", ".join(f.path for f in files[:3]) + (", ..." if len(files) > 3 else "")
    hows = sorted({p.how for p in placed})
    msg = f"{where} ({'/'.join(hows)}, sha256 verified"
    msg += f", {human_bytes(moved)} fetched)" if moved else ")"
    return ItemResult(model.id, KIND, True, msg, model.entry.required)


# -- re-check and delete --------------------------------------------------------------------
def still_needed(change: Change, ctx: ApplyContext) -> bool:
    """False when the state (as it is now) already satisfies the change."""

    if ctx.force or ctx.verify:
        return True
    model = change.item
    record = ctx.store.state.models.get(change.id)
    if record is None or not isinstance(model, DesiredModel):
        return True
    if record.resolved.get("request") != request_key(model):
        return True
    if any(record.resolved.get(k) not in (None, v) for k, v in model.pinned.items()):
        return True
    if model.sha256 and len(record.files) == 1 and record.files[0].sha256 != model.sha256:
        return True
    return not all(trusted(ctx.layout.root, f) for f in record.files)


def _remove_stale(previous: ModelRecord, keep: set[str], ctx: ApplyContext) -> list[str]:
    """Remove files an older placement of this model left that nothing records any more.

    A file still named by another model, or changed on disk since it was placed (the user's
    now), stays; the paths left in place are returned.
    """
    ctx.guard()
    root = ctx.layout.root
    named = {
        f.path
        for rid, rec in ctx.store.state.models.items()
        if rid != previous.id
        for f in rec.files
    } | keep
    kept = []
    for f in previous.files:
        if f.path in named:
            continue
        if trusted(root, f):
            (root / f.path).unlink()
        elif (root / f.path).exists():
            kept.append(f.path)
    return kept


def _delete(change: Change, ctx: ApplyContext) -> ItemResult:
    record = change.item
    assert isinstance(record, ModelRecord)
    kept = _remove_stale(record, set(), ctx)
    ctx.store.drop_model(record.id)
    msg = "removed" + (f"; kept {', '.join(kept)} (changed on disk since placed)" if kept else "")
    return ItemResult(record.id, KIND, True, msg)


# -- the kind's apply -----------------------------------------------------------------------
def apply(changes: list[Change], ctx: ApplyContext) -> list[ItemResult]:
    """Apply the ``model`` changes of a plan; one result per acted-on change."""
    from provisioner.sources.download import check_free_space
    from provisioner.sources.progress import make_progress

    mine = [c for c in changes if c.kind == KIND and c.pending]
    results: list[ItemResult] = []
    if ctx.prune:
        for change in mine:
            if change.action == "delete":
                results.append(_guard(change, functools.partial(_delete, change, ctx)))
    work = [c for c in mine if c.action in ("create", "update")]
    todo = []
    for change in work:
        if still_needed(change, ctx):
            todo.append(change)
        else:
            results.append(ItemResult(change.id, KIND, True, "already present", _required(change)))
    if not todo:
        return results
    progress = make_progress(sys.stderr)
    runner = Runner(ctx, progress)
    pool = ThreadPoolExecutor(max_workers=max(1, ctx.jobs), thread_name_prefix="phoenix-model")
    try:
        resolved = list(
            pool.map(lambda c: _attempt(functools.partial(resolve, c, runner), c), todo)
        )
        ready = [r for r in resolved if isinstance(r, Resolved)]
        results += [r for r in resolved if isinstance(r, ItemResult)]
        total = sum(_bytes_to_fetch(j, r, runner) for r in ready for j in r.files)
        if total:
            ctx.layout.staging.mkdir(parents=True, exist_ok=True)
            check_free_space(ctx.layout.staging, total, f"{len(ready)} model download(s)")
        results += list(
            pool.map(lambda r: _guard(r.change, functools.partial(_run, r, runner)), ready)
        )
    except BaseException:  # Ctrl-C / SIGTERM: stop transfers, keep partial files for a resume
        runner.cancel.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        progress.close()
        runner.close()
    for r in results:  # the caller reports results; this is the debug trail
        ctx.log.debug("%s %s: %s", "ok" if r.ok else "FAILED", r.id, r.message)
    return results


def _bytes_to_fetch(job: FileJob, res: Resolved, runner: Runner) -> int:
    """Bytes the preflight must count for ``job``: 0 when it will be linked or kept in place."""
    if job.size is None or (runner.has(job.sha256) and not runner.ctx.force):
        return 0
    folder = job.folder or job.source_folder or folder_from_name(job.filename)
    if folder is not None and not runner.ctx.force:
        try:
            root, subdir = runner.ctx.layout.root, res.model.entry.subdir
            dest, _ = destination(root, folder, subdir, job.filename)
            if dest.stat().st_size == job.size:
                return 0  # verified by hash and kept if it matches (see _adopt_existing)
        except (OSError, SourceError):
            pass
    return job.size


def _required(change: Change) -> bool:
    entry = getattr(change.item, "entry", None)
    return bool(getattr(entry, "required", False))


def _attempt(fn: Callable[[], Resolved], change: Change) -> Resolved | ItemResult:
    try:
        return fn()
    except (PhoenixError, OSError) as exc:
        return _failure(change, exc)


def _guard(change: Change, fn: Callable[[], ItemResult]) -> ItemResult:
    try:
        return fn()
    except (PhoenixError, OSError) as exc:
        return _failure(change, exc)


def _failure(change: Change, exc: PhoenixError | OSError) -> ItemResult:
    if isinstance(exc, PhoenixError):
        return ItemResult(change.id, KIND, False, exc.render(), _required(change))
    where = f" ({exc.filename})" if exc.filename else ""
    return ItemResult(change.id, KIND, False, f"{exc.strerror or exc}{where}", _required(change))

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

Steps 1, 3 and 6 are here. Step 2, the resolution per source (each calls its ``sources/``
module), is :func:`provisioner.actions.model_resolve.resolve`; steps 4-5 for one file are
:func:`provisioner.actions.model_place.obtain`; what the worker threads share (sessions, dedup
by SHA256, destination claims) is :class:`provisioner.actions.model_runner.Runner`. The facts
and the diff are :mod:`provisioner.plan.models`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from provisioner.actions.base import ApplyContext
from provisioner.actions.model_place import destination, obtain
from provisioner.actions.model_resolve import resolve
from provisioner.actions.model_runner import (
    FileJob,
    Placed,
    Resolved,
    Runner,
    trusted,
)
from provisioner.core.errors import PhoenixError, SourceError
from provisioner.core.units import human_bytes
from provisioner.manifest.desired import DesiredModel, request_key
from provisioner.plan.change import Change, ItemResult
from provisioner.plan.models import KIND
from provisioner.sources.organizer import folder_from_name
from provisioner.state.store import ModelRecord, file_record


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

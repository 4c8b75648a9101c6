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

Tokens: the HF token goes only to huggingface_hub; the Civitai token only into the per-request
auth scoped to the API host (the CDN redirect never gets it); plain URLs get no credentials.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import shutil
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.actions.base import ApplyContext
from provisioner.core.errors import DiskSpaceError, PhoenixError, SourceError
from provisioner.core.units import human_bytes
from provisioner.manifest.desired import DesiredModel, hf_selection, request_key
from provisioner.manifest.models import CivitaiModel, HFModel, URLModel
from provisioner.plan.change import Change, ItemResult
from provisioner.sources.organizer import folder_from_name, route
from provisioner.sources.placement import hash_file, link_or_copy, place
from provisioner.sources.progress import Progress
from provisioner.sources.safetensors_header import read_header
from provisioner.state.store import FileRecord, ModelRecord, file_record

KIND = "model"

#: fetch(staging_dir) -> (verified staged file, its sha256)
Fetch = Callable[[Path], tuple[Path, str]]


@dataclass
class FileJob:
    """One file of a model, resolved: how to fetch it and what it must hash to."""

    label: str
    filename: str
    sha256: str | None
    size: int | None
    #: folder known before fetching (explicit type, profile, source metadata, known name)
    folder: str | None
    source_folder: str | None
    fetch: Fetch
    #: a stable staging folder for this file, so a rerun resumes
    staging_key: str


@dataclass
class Resolved:
    """A change with its files resolved and what to record about the resolution."""

    change: Change
    model: DesiredModel
    files: list[FileJob]
    resolved: dict[str, str]


@dataclass
class _Placed:
    path: Path
    sha256: str
    how: str
    transferred: int


@dataclass
class _Runner:
    """Shared, thread-safe machinery of one ``apply`` call."""

    ctx: ApplyContext
    progress: Progress | None = None
    #: set on Ctrl-C: transfers stop at the next chunk (their partial files are kept to resume)
    cancel: threading.Event = field(default_factory=threading.Event)
    _session: Any = None
    _hf: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sha_locks: dict[str, threading.Lock] = field(default_factory=dict)
    #: sha256 → a placed file with those bytes (seeded from the state, trusted by size+mtime)
    _by_sha: dict[str, Path] = field(default_factory=dict)
    #: destination (relative) → (model id, sha256, source label) claimed in this run
    _claims: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        root = self.ctx.layout.root
        for record in self.ctx.store.state.models.values():
            for f in record.files:
                if _trusted(root, f):
                    self._by_sha.setdefault(f.sha256, root / f.path)

    # -- sources --------------------------------------------------------------------------
    def hf(self) -> Any:
        with self._lock:
            if self._hf is None:
                from provisioner.sources.huggingface import HFClient, transfer_backend

                self._hf = HFClient(token=self.ctx.secrets.hf_token)
                self.ctx.log.debug("Hugging Face transfers: %s", transfer_backend())
            return self._hf

    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                from provisioner.sources.http import make_session

                # no credential on the session: the Civitai token is scoped per request
                self._session = make_session(pool_size=max(16, 2 * self.ctx.jobs))
            return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    # -- per-sha serialisation and dedup ------------------------------------------------
    @contextlib.contextmanager
    def for_sha(self, sha: str | None) -> Iterator[Path | None]:
        """Serialise work on one content hash; yields an already placed copy, if any."""
        if sha is None:
            yield None
            return
        with self._lock:
            lock = self._sha_locks.setdefault(sha, threading.Lock())
        with lock:
            with self._lock:
                existing = self._by_sha.get(sha)
            yield existing if existing is not None and existing.is_file() else None

    def has(self, sha: str | None) -> bool:
        """True when a file with these bytes is already placed (it will be linked, not fetched)."""
        with self._lock:
            return sha is not None and sha in self._by_sha

    def placed(self, sha: str, path: Path) -> None:
        with self._lock:
            self._by_sha.setdefault(sha, path)

    def claim(self, model_id: str, rel: str, sha: str, label: str) -> None:
        """Refuse to place two different files at one destination (identical bytes may share).

        Two files of one model count as much as files of two models: neither may replace the
        other.
        """
        with self._lock:
            other = self._claims.get(rel)
            if other is not None and other[1] != sha:
                if other[0] == model_id:
                    raise _own_collision(model_id, rel, other[2], label)
                raise SourceError(
                    f"{rel} is also the destination of {other[0]} with different content",
                    hint="set 'subdir' (or 'name') on one of the entries",
                )
            for rid, rec in self.ctx.store.state.models.items():
                if rid == model_id:
                    continue
                for f in rec.files:
                    if f.path == rel and f.sha256 != sha:
                        raise SourceError(
                            f"{rel} is already placed by {rid} with different content",
                            hint="set 'subdir' (or 'name') on one of the entries",
                        )
            self._claims.setdefault(rel, (model_id, sha, label))


def _own_collision(model_id: str, dest: str, first: str, second: str) -> SourceError:
    return SourceError(
        f"{model_id}: {first} and {second} are different files with the same destination {dest}; "
        "one would silently replace the other",
        hint="narrow 'files' to one of them, or split the entry into entries with different "
        "'subdir' values",
    )


def check_own_destinations(model_id: str, subdir: str | None, jobs: list[FileJob]) -> None:
    """Before anything is fetched: no two different files of one model may share a destination.

    Files with the same name collide unless their folders are known and differ (a folder that
    only the file's header will tell may be the same). Identical bytes (same known SHA256) may
    share a destination: the second is the first. Raises :class:`SourceError` naming both.
    """
    sub = f"{subdir.strip('/')}/" if subdir else ""
    for i, job in enumerate(jobs):
        for other in jobs[:i]:
            if other.filename != job.filename:
                continue
            if other.folder and job.folder and other.folder != job.folder:
                continue
            if job.sha256 and other.sha256 == job.sha256:
                continue
            folder = job.folder or other.folder or "?"
            raise _own_collision(
                model_id, f"models/{folder}/{sub}{job.filename}", other.label, job.label
            )


def _trusted(root: Path, f: FileRecord) -> bool:
    try:
        st = (root / f.path).stat()
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (f.size, f.mtime_ns)


# -- resolution -----------------------------------------------------------------------------
def resolve(change: Change, runner: _Runner) -> Resolved:
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
    model: DesiredModel, entry: HFModel, runner: _Runner, resolved: dict[str, str]
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
    model: DesiredModel, entry: CivitaiModel, runner: _Runner, resolved: dict[str, str]
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
    model: DesiredModel, entry: URLModel, runner: _Runner, resolved: dict[str, str]
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


# -- fetch and place ------------------------------------------------------------------------
def _obtain(job: FileJob, res: Resolved, runner: _Runner) -> _Placed:
    """Get one file into its destination: reuse, link a twin, or download + verify."""
    layout = runner.ctx.layout
    staging = layout.staging / job.staging_key
    subdir = res.model.entry.subdir
    with runner.for_sha(job.sha256) as twin:
        if twin is not None and not runner.ctx.force:
            folder = _folder(job, twin)
            dest, rel = _dest(layout.root, folder, subdir, job.filename)
            runner.claim(res.model.id, rel, job.sha256 or "", job.label)
            if dest.exists() and os.path.samefile(dest, twin):
                return _Placed(dest, job.sha256 or "", "present", 0)
            how = link_or_copy(twin, dest, layout.staging)
            return _Placed(dest, job.sha256 or "", how, 0)
        adopted = _adopt_existing(job, res, runner)
        if adopted is not None:
            return adopted
        try:
            staged, sha = job.fetch(staging)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                _tidy(staging)
                raise
            shutil.rmtree(staging, ignore_errors=True)  # free the space the partial file took
            raise DiskSpaceError(
                f"the disk filled up while fetching {job.label}; the partial file was removed",
                where=str(layout.staging),
                hint="free space on the volume or use a larger one, then rerun",
            ) from exc
        except BaseException:
            _tidy(staging)
            raise
        try:
            folder = _folder(job, staged)
            dest, rel = _dest(layout.root, folder, subdir, job.filename)
            runner.claim(res.model.id, rel, sha, job.label)
            size = staged.stat().st_size
            place(staged, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        runner.placed(sha, dest)
        return _Placed(dest, sha, "downloaded", size)


def _tidy(staging: Path) -> None:
    """After a failed fetch keep the staging folder only if it holds bytes to resume from."""
    partial = [
        p for p in staging.rglob("*")
        if p.is_file() and p.name.endswith((".incomplete", ".part")) and p.stat().st_size > 0
    ] if staging.exists() else []  # fmt: skip
    if not partial:
        shutil.rmtree(staging, ignore_errors=True)


def _adopt_existing(job: FileJob, res: Resolved, runner: _Runner) -> _Placed | None:
    """A file already at the destination with the trusted hash is kept, not fetched again."""
    folder = job.folder or job.source_folder or folder_from_name(job.filename)
    if not job.sha256 or runner.ctx.force or folder is None:
        return None
    dest, rel = _dest(runner.ctx.layout.root, folder, res.model.entry.subdir, job.filename)
    try:
        st = dest.stat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None  # a pipe or device there is replaced by the download
    if job.size is not None and abs(st.st_size - job.size) > 1024 and job.size > 0:
        return None
    if hash_file(dest).sha256 != job.sha256:
        return None
    runner.claim(res.model.id, rel, job.sha256, job.label)
    runner.placed(job.sha256, dest)
    return _Placed(dest, job.sha256, "verified in place", 0)


def _folder(job: FileJob, content: Path) -> str:
    header = read_header(content) if content.suffix == ".safetensors" or job.filename.endswith(
        ".safetensors"
    ) else None
    chosen = route(
        job.filename,
        explicit=job.folder,
        source_folder=job.source_folder,
        header_keys=header.keys if header is not None else None,
    )
    if chosen.warning:
        import logging

        logging.getLogger("phoenix.apply").warning("%s: %s", job.label, chosen.warning)
    return chosen.folder


def _dest(root: Path, folder: str, subdir: str | None, filename: str) -> tuple[Path, str]:
    from provisioner.sources.names import confined_path

    base = root / "models" / folder
    if subdir:
        base = base / subdir.strip("/")
    try:
        dest = confined_path(base, filename)
    except ValueError as exc:
        raise SourceError(str(exc)) from exc
    return dest, dest.relative_to(root).as_posix()


def _run(res: Resolved, runner: _Runner) -> ItemResult:
    """Fetch, place and record every file of one resolved model."""
    model = res.model
    root = runner.ctx.layout.root
    placed: list[_Placed] = []
    for job in res.files:
        placed.append(_obtain(job, res, runner))
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
    return not all(_trusted(ctx.layout.root, f) for f in record.files)


def _remove_stale(previous: ModelRecord, keep: set[str], ctx: ApplyContext) -> list[str]:
    """Remove files an older placement of this model left that nothing records any more.

    A file still named by another model, or changed on disk since it was placed (the user's
    now), stays; the paths left in place are returned.
    """
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
        if _trusted(root, f):
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
    runner = _Runner(ctx, progress)
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


def _bytes_to_fetch(job: FileJob, res: Resolved, runner: _Runner) -> int:
    """Bytes the preflight must count for ``job``: 0 when it will be linked or kept in place."""
    if job.size is None or (runner.has(job.sha256) and not runner.ctx.force):
        return 0
    folder = job.folder or job.source_folder or folder_from_name(job.filename)
    if folder is not None and not runner.ctx.force:
        try:
            dest, _ = _dest(runner.ctx.layout.root, folder, res.model.entry.subdir, job.filename)
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

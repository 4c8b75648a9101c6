"""Get one resolved model file into place: reuse it, link a twin, or download + verify it, then
route it to ``models/<folder>/`` (header-based routing reads the staged file), confine the name
and ``os.replace`` it there. Nothing is placed before its SHA256 matched a trusted hash.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

from provisioner.actions.model_runner import (
    FileJob,
    Placed,
    Resolved,
    Runner,
)
from provisioner.core.errors import DiskSpaceError, SourceError
from provisioner.sources.organizer import folder_from_name, route
from provisioner.sources.placement import hash_file, link_or_copy, place
from provisioner.sources.safetensors_header import read_header


def obtain(job: FileJob, res: Resolved, runner: Runner) -> Placed:
    """Get one file into its destination: reuse, link a twin, or download + verify."""
    layout = runner.ctx.layout
    staging = layout.staging / job.staging_key
    subdir = res.model.entry.subdir
    with runner.for_sha(job.sha256) as twin:
        if twin is not None and not runner.ctx.force:
            folder = _folder(job, twin)
            dest, rel = destination(layout.root, folder, subdir, job.filename)
            runner.claim(res.model.id, rel, job.sha256 or "", job.label)
            if dest.exists() and os.path.samefile(dest, twin):
                return Placed(dest, job.sha256 or "", "present", 0)
            runner.ctx.guard()
            how = link_or_copy(twin, dest, layout.staging)
            return Placed(dest, job.sha256 or "", how, 0)
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
        # the volume lock is still ours, or the verified file stays staged, unplaced: the
        # staging folder is then the new holder's to resume from or remove, not ours
        runner.ctx.guard()
        try:
            folder = _folder(job, staged)
            dest, rel = destination(layout.root, folder, subdir, job.filename)
            runner.claim(res.model.id, rel, sha, job.label)
            size = staged.stat().st_size
            place(staged, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        runner.placed(sha, dest)
        return Placed(dest, sha, "downloaded", size)


def _tidy(staging: Path) -> None:
    """After a failed fetch keep the staging folder only if it holds bytes to resume from."""
    partial = [
        p for p in staging.rglob("*")
        if p.is_file() and p.name.endswith((".incomplete", ".part")) and p.stat().st_size > 0
    ] if staging.exists() else []  # fmt: skip
    if not partial:
        shutil.rmtree(staging, ignore_errors=True)


def _adopt_existing(job: FileJob, res: Resolved, runner: Runner) -> Placed | None:
    """A file already at the destination with the trusted hash is kept, not fetched again."""
    folder = job.folder or job.source_folder or folder_from_name(job.filename)
    if not job.sha256 or runner.ctx.force or folder is None:
        return None
    dest, rel = destination(runner.ctx.layout.root, folder, res.model.entry.subdir, job.filename)
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
    return Placed(dest, job.sha256, "verified in place", 0)


def _folder(job: FileJob, content: Path) -> str:
    header = (
        read_header(content)
        if content.suffix == ".safetensors" or job.filename.endswith(".safetensors")
        else None
    )
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


def destination(root: Path, folder: str, subdir: str | None, filename: str) -> tuple[Path, str]:
    """``models/<folder>/[<subdir>/]<filename>`` confined under the root: (absolute, relative)."""
    from provisioner.sources.names import confined_path

    base = root / "models" / folder
    if subdir:
        base = base / subdir.strip("/")
    try:
        dest = confined_path(base, filename)
    except ValueError as exc:
        raise SourceError(str(exc)) from exc
    return dest, dest.relative_to(root).as_posix()

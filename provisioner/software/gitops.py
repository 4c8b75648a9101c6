"""Git plumbing for ComfyUI and custom nodes: clone into staging, fetch, check out, read HEAD.

Git never prompts (``GIT_TERMINAL_PROMPT=0``, an askpass that answers nothing, ssh in batch
mode), only ``https``/``ssh`` transports are allowed (``file`` too, but only for a ``file://``
URL: tests and offline mirrors), and every command has a timeout. Reading HEAD is done from the
files under ``.git`` so that a no-op check starts no process at all.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from provisioner.core.errors import GitError
from provisioner.core.fsio import read_capped, staging_dir
from provisioner.software import proc

#: a full commit id; ``\Z``, not ``$``, which would also accept a trailing newline
HEX40 = re.compile(r"\A[0-9a-f]{40}\Z")
_URL_OK = re.compile(r"\A(https://\S+|ssh://\S+|git@[^\s:]+:\S+|file://\S+)\Z")
#: the files read under ``.git`` (HEAD, config, refs) are small; anything bigger is not git's
MAX_GIT_FILE_BYTES = 1024 * 1024
#: packed-refs grows with every tag and branch (about 60 bytes each): room for a million
MAX_PACKED_REFS_BYTES = 64 * 1024 * 1024
#: a remote that answers nothing for this long (bytes/s below the limit) is given up on
CLONE_TIMEOUT = 900.0
LOCAL_TIMEOUT = 120.0
#: an askpass program that answers nothing, so git fails instead of prompting
_TRUE = shutil.which("true") or "/bin/true"


def check_url(url: str) -> None:
    """Accept only ``https://``, ``ssh://``, ``git@host:path`` and ``file://`` URLs."""
    if not _URL_OK.match(url) or url.startswith("-"):
        raise GitError(
            f"unsupported git URL {url!r}",
            hint="use https://host/owner/repo, ssh://..., git@host:owner/repo or file:///path",
        )


def git_env(url: str | None = None) -> dict[str, str]:
    """The environment for a git child: no prompts, no credentials, safe transports only."""
    protocols = "https:ssh" + (":file" if url is not None and url.startswith("file://") else "")
    return proc.child_env(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": _TRUE,
            "SSH_ASKPASS": _TRUE,
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=30",
            "GIT_ALLOW_PROTOCOL": protocols,
            "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
            "GIT_HTTP_LOW_SPEED_TIME": "60",
            "GIT_CONFIG_NOSYSTEM": "1",
            "LC_ALL": "C",
        },
        drop=("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"),
    )


def git(
    args: list[str],
    *,
    cwd: Path | None = None,
    url: str | None = None,
    timeout: float = LOCAL_TIMEOUT,
) -> proc.Result:
    """Run ``git args`` with :func:`git_env`; a timeout becomes a failed result."""
    argv = [
        "git",
        "-c", "credential.helper=",
        "-c", "core.hooksPath=/dev/null",
        "-c", "advice.detachedHead=false",
        "-c", "protocol.file.allow=" + ("always" if url and url.startswith("file://") else "never"),
        *args,
    ]  # fmt: skip
    try:
        return proc.run(argv, cwd=cwd, env=git_env(url), timeout=timeout)
    except proc.Timeout as exc:
        return proc.Result(tuple(argv), 124, str(exc))


def _fail(what: str, url: str, result: proc.Result, hint: str | None = None) -> GitError:
    return GitError(f"{what} failed: {result.tail(6) or 'no output'}", where=url, hint=hint)


def clone(url: str, dest: Path) -> None:
    """Clone ``url`` into ``dest`` (which must not exist) without checking out a work tree."""
    check_url(url)
    result = git(["clone", "--no-checkout", "--quiet", "--", url, str(dest)], url=url,
                 timeout=CLONE_TIMEOUT)  # fmt: skip
    if not result.ok:
        raise _fail("git clone", url, result, "check the URL (private repositories need ssh keys)")


def fetch(repo: Path, url: str) -> None:
    """Fetch branches and tags of ``url`` into ``repo`` (as ``origin``)."""
    check_url(url)
    result = git(
        ["fetch", "--quiet", "--force", "--tags", "--", url,
         "+refs/heads/*:refs/remotes/origin/*"],
        cwd=repo, url=url, timeout=CLONE_TIMEOUT,
    )  # fmt: skip
    if not result.ok:
        raise _fail("git fetch", url, result)


def fetch_commit(repo: Path, url: str, commit: str) -> bool:
    """Try to fetch one commit by id (servers that allow it); True when it is now present."""
    result = git(["fetch", "--quiet", "--", url, commit], cwd=repo, url=url, timeout=CLONE_TIMEOUT)
    return result.ok and has_commit(repo, commit)


def has_commit(repo: Path, commit: str) -> bool:
    """True when ``commit`` exists in ``repo``."""
    return git(["cat-file", "-e", f"{commit}^{{commit}}"], cwd=repo).ok


def resolve_local(repo: Path, ref: str | None) -> tuple[str, str]:
    """Resolve ``ref`` inside a clone to ``(commit, kind)``; kind is commit, tag or branch.

    ``None`` means the remote's default branch. Tags win over branches, as in git.
    """
    candidates: list[tuple[str, str]]
    if ref is None:
        candidates = [
            (f"refs/remotes/origin/{name}", "branch") for name in ("HEAD", "main", "master")
        ]
    elif HEX40.match(ref):
        candidates = [(ref, "commit")]
    else:
        candidates = [
            (f"refs/tags/{ref}", "tag"),
            (f"refs/remotes/origin/{ref}", "branch"),
            (f"refs/heads/{ref}", "branch"),
            (ref, "commit"),
        ]
    for name, kind in candidates:
        result = git(["rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"], cwd=repo)
        if result.ok:
            return result.output.strip(), kind
    raise GitError(f"ref {ref!r} not found", hint="use a commit, tag or branch that exists")


def checkout(repo: Path, commit: str, *, force: bool = False, url: str | None = None) -> None:
    """Check out ``commit`` detached (``force`` discards local modifications), with submodules.

    Submodules are fetched under the same transport rules as ``url`` (the superproject's).
    """
    args = ["checkout", "--quiet", "--detach", *(["--force"] if force else []), commit]
    result = git(args, cwd=repo)
    if not result.ok:
        raise GitError(f"git checkout {commit} failed: {result.tail(6)}", where=str(repo))
    if (repo / ".gitmodules").is_file():
        sub = git(
            ["submodule", "update", "--init", "--recursive", *(["--force"] if force else [])],
            cwd=repo,
            url=url,
            timeout=CLONE_TIMEOUT,
        )
        if not sub.ok:
            raise GitError(f"git submodule update failed: {sub.tail(6)}", where=str(repo))


def is_dirty(repo: Path) -> bool:
    """True when tracked files have local modifications (untracked files do not count)."""
    result = git(["--no-optional-locks", "status", "--porcelain", "--untracked-files=no"], cwd=repo)
    if not result.ok:
        raise GitError(f"git status failed: {result.tail(4)}", where=str(repo))
    return bool(result.output.strip())


def _read_git_file(path: Path, limit: int = MAX_GIT_FILE_BYTES) -> str | None:
    """The text of a regular file under ``.git`` of at most ``limit`` bytes; None when it is
    missing, not a regular file (a FIFO would block), too big, not UTF-8 or holds a NUL byte:
    "unknown", never raised.
    """
    try:
        text = read_capped(path, limit).decode("utf-8")
    except (OSError, ValueError):  # ValueError: not UTF-8, or a NUL byte in the path
        return None
    return None if "\x00" in text else text


def origin_url(repo: Path) -> str | None:
    """The ``origin`` remote's URL, read from ``.git/config`` (no process); None if unknown."""
    gitdir = git_dir(repo)
    text = _read_git_file(gitdir / "config") if gitdir is not None else None
    if text is None:
        return None
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == '[remote "origin"]' and line.startswith("url"):
            key, _, value = line.partition("=")
            if key.strip() == "url":
                return value.strip() or None
    return None


def _resolve(base: Path, target: str) -> Path | None:
    """``target`` (absolute, or relative to ``base``) as an absolute path; None if unusable."""
    try:
        path = Path(target)
        return path if path.is_absolute() else (base / path).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        return None


def git_dir(repo: Path) -> Path | None:
    """The repository's git directory (``.git`` itself or where a ``gitdir:`` file points)."""
    dotgit = repo / ".git"
    if dotgit.is_dir():
        return dotgit
    text = _read_git_file(dotgit)
    if text is None:
        return None
    line = text.strip()
    if not line.startswith("gitdir:") or not line[len("gitdir:") :].strip():
        return None
    return _resolve(repo, line[len("gitdir:") :].strip())


def _is_ref_name(ref: str) -> bool:
    """A ref HEAD may name: under ``refs/``, no ``..`` or empty component (no path escapes)."""
    parts = ref.split("/")
    return parts[0] == "refs" and len(parts) > 1 and all(p not in {"", ".", ".."} for p in parts)


def _common_dir(gitdir: Path) -> Path | None:
    """Where shared refs live: ``commondir`` (a linked worktree) or the git dir itself."""
    text = _read_git_file(gitdir / "commondir")
    if text is None:
        return None if (gitdir / "commondir").exists() else gitdir
    return _resolve(gitdir, text.strip()) if text.strip() else None


def _read_ref(gitdir: Path, ref: str) -> str | None:
    """The commit ``ref`` names, from loose refs (git dir, then common dir) or packed-refs."""
    common = _common_dir(gitdir)
    if common is None:
        return None
    for base in (gitdir, common):
        value = _read_git_file(base / ref)
        if value is not None and HEX40.match(value.strip()):
            return value.strip()
    packed = _read_git_file(common / "packed-refs", MAX_PACKED_REFS_BYTES)
    for line in (packed or "").splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and HEX40.match(sha):
            return sha
    return None


def read_head(repo: Path) -> str | None:
    """The commit HEAD points at, read from files (loose or packed refs); None if unknown.

    Broken metadata (not UTF-8, NUL bytes, a FIFO, a ref outside ``refs/``) is unknown too.
    """
    gitdir = git_dir(repo)
    text = _read_git_file(gitdir / "HEAD") if gitdir is not None else None
    if gitdir is None or text is None:
        return None
    head = text.strip()
    if HEX40.match(head):
        return head
    if not head.startswith("ref:"):
        return None
    ref = head[4:].strip()
    return _read_ref(gitdir, ref) if _is_ref_name(ref) else None


def resolve_ref(url: str, ref: str | None) -> str:
    """Resolve ``ref`` (tag, branch, commit; ``None`` = default branch) at ``url`` to a commit.

    Used by the lock file. A 40-hex ref is returned as is; tags resolve to the commit they
    point at (peeled). Raises :class:`GitError` naming the URL when the ref does not exist.
    """
    check_url(url)
    if ref is not None and HEX40.match(ref):
        return ref
    wanted = ref or "HEAD"
    result = git(["ls-remote", "--", url, wanted] if ref is None else
                 ["ls-remote", "--", url, f"refs/tags/{ref}", f"refs/tags/{ref}^{{}}",
                  f"refs/heads/{ref}"], url=url, timeout=CLONE_TIMEOUT)  # fmt: skip
    if not result.ok:
        raise _fail("git ls-remote", url, result)
    refs: dict[str, str] = {}
    for line in result.output.splitlines():
        sha, _, name = line.partition("\t")
        if HEX40.match(sha.strip()):
            refs[name.strip()] = sha.strip()
    for name in (f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"refs/heads/{ref}", "HEAD"):
        if name in refs:
            return refs[name]
    raise GitError(
        f"ref {ref!r} not found", where=url, hint="use a commit, tag or branch that exists"
    )


@dataclass(frozen=True)
class Checkout:
    """Where :func:`materialize` left a checkout."""

    commit: str
    #: what the ref was: commit, tag or branch (a branch, or no ref, is unpinned)
    kind: str
    #: True when HEAD moved (a fresh clone or a different commit)
    changed: bool
    fresh: bool

    @property
    def unpinned(self) -> bool:
        return self.kind == "branch"


def _wanted(repo: Path, url: str, ref: str | None, locked: str | None) -> tuple[str, str]:
    """The commit to check out in ``repo`` (fetching when it is not there yet)."""
    pinned = locked or (ref if ref is not None and HEX40.match(ref) else None)
    if pinned is not None:
        if not has_commit(repo, pinned) and not fetch_commit(repo, url, pinned):
            fetch(repo, url)
            if not has_commit(repo, pinned):
                raise GitError(f"commit {pinned} not found", where=url)
        return pinned, "commit" if locked is None else "locked"
    return resolve_local(repo, ref)


def materialize(
    url: str,
    ref: str | None,
    dest: Path,
    staging: Path,
    *,
    locked: str | None = None,
    force: bool = False,
    what: str,
) -> Checkout:
    """Make ``dest`` a checkout of ``url`` at ``ref`` (or the ``locked`` commit).

    Missing: clone into ``staging``, check out, then rename into place, so a failed clone
    leaves nothing at ``dest``. Present: refuse local modifications unless ``force``, fetch only
    when the wanted commit is not known locally, then check out detached.
    """
    check_url(url)
    if not dest.exists():
        staging.mkdir(parents=True, exist_ok=True)
        with staging_dir(staging, f"clone-{dest.name}-") as tmp:
            repo = tmp / dest.name
            try:
                clone(url, repo)
                commit, kind = _wanted(repo, url, ref, locked)
                checkout(repo, commit, url=url)
            except GitError as exc:
                raise GitError(f"{what}: {exc.message}", where=url, hint=exc.hint) from exc
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(repo, dest)
        return Checkout(commit, kind, True, True)
    if git_dir(dest) is None:
        raise GitError(
            f"{what}: {dest} exists but is not a git checkout",
            where=str(dest),
            hint="move it away (Phoenix does not delete files it did not create)",
        )
    head = read_head(dest)
    pinned = locked or (ref if ref is not None and HEX40.match(ref) else None)
    if pinned is not None and head == pinned:
        return Checkout(head, "commit", False, False)
    if origin_url(dest) != url:
        git(["remote", "set-url", "origin", url], cwd=dest)
    try:
        if pinned is None:
            fetch(dest, url)
        commit, kind = _wanted(dest, url, ref, locked)
    except GitError as exc:
        raise GitError(f"{what}: {exc.message}", where=url, hint=exc.hint) from exc
    if commit == head:
        return Checkout(commit, kind, False, False)
    if is_dirty(dest) and not force:
        raise GitError(
            f"{what}: {dest} has local modifications; refusing to check out {commit[:12]}",
            where=str(dest),
            hint="commit or stash them (git -C DIR stash), or rerun apply with --force to discard",
        )
    checkout(dest, commit, force=force, url=url)
    return Checkout(commit, kind, True, False)


def node_name(url: str) -> str:
    """The folder name a repository URL implies: its last path segment without ``.git``."""
    tail = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail[:-4] if tail.endswith(".git") else tail

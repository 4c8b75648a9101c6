"""Hugging Face source, entirely through ``huggingface_hub`` (no hand-written HTTP).

* The endpoint is ``HF_ENDPOINT`` read at call time (mirrors, tests) and passed explicitly.
* A revision (branch, tag) is resolved to a commit; files are selected by literal names or glob
  patterns at that commit, with their LFS SHA256 and size from the Hub's tree API.
* Downloads go through ``hf_hub_download`` into a staging folder on the models' filesystem
  (``hf_xet`` is used by huggingface_hub for Xet-backed files when it is installed); the bytes
  are then hashed and compared with the trusted hash before anything is placed.
* The token is given only to huggingface_hub (which sends it only to the endpoint); it is never
  logged, and errors name the repository and what to do, never the token.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import inspect
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.core.errors import AuthError, IntegrityError, NotFoundError, SourceError
from provisioner.core.redact import register_secret
from provisioner.manifest.models import is_glob
from provisioner.sources.hub_progress import HubProgressBar, StagingWatch
from provisioner.sources.placement import hash_file
from provisioner.sources.progress import Progress

DEFAULT_ENDPOINT = "https://huggingface.co"
PUBLIC_SITE = "https://huggingface.co"
_COMMIT = re.compile(r"^[0-9a-f]{40}\Z")


def endpoint() -> str:
    """The Hub endpoint: ``HF_ENDPOINT`` at call time, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def license_page(repo: str) -> str:
    """The page where a user requests access to / accepts the license of a gated repo."""
    return f"{PUBLIC_SITE}/{repo}"


def transfer_backend() -> str:
    """Which transfer huggingface_hub will use for Xet-backed files: ``hf_xet`` or ``http``."""
    import importlib.util

    return "hf_xet" if importlib.util.find_spec("hf_xet") is not None else "http"


@dataclass(frozen=True)
class HFFile:
    """One file of a repo at a resolved commit, with the Hub's own hashes when it has them."""

    repo: str
    path: str
    commit: str
    size: int | None
    #: the LFS object id (SHA256 of the content); ``None`` for small files stored in git
    sha256: str | None
    #: git blob id (SHA-1 of ``blob <size>\0`` + content) — verifies non-LFS files
    blob_id: str | None = None

    @property
    def name(self) -> str:
        """The file's base name (the name it gets in its ComfyUI folder)."""
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class HFResolution:
    """A repo reference resolved: requested revision → commit, selection → files."""

    repo: str
    revision: str
    commit: str
    files: tuple[HFFile, ...]


def matches(path: str, pattern: str) -> bool:
    """Whether a repo ``path`` is selected by ``pattern``.

    A pattern without ``/`` matches top-level files only (``*.safetensors`` does not pull in
    ``transformer/*.safetensors``); a pattern with ``/`` is a glob over the full path.
    """
    if "/" not in pattern:
        return "/" not in path and fnmatch.fnmatchcase(path, pattern)
    return fnmatch.fnmatchcase(path, pattern)


class HFClient:
    """Resolve and download Hugging Face files with one token and the current endpoint."""

    def __init__(self, token: str | None = None, endpoint_url: str | None = None) -> None:
        register_secret(token)
        self._token: str | bool = token or False
        self._endpoint = (endpoint_url or endpoint()).rstrip("/")
        self._has_token = bool(token)

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def _api(self) -> Any:
        from huggingface_hub import HfApi

        return HfApi(endpoint=self._endpoint, token=self._token)

    def resolve_commit(self, repo: str, revision: str | None) -> str:
        """The commit ``revision`` (default ``main``) of ``repo`` points at."""
        rev = revision or "main"
        with self._errors(repo, rev):
            info = self._api().model_info(repo, revision=rev)
        sha = getattr(info, "sha", None)
        if not isinstance(sha, str) or not _COMMIT.match(sha):
            raise SourceError(
                f"{self._endpoint} did not report a commit for {repo}@{rev}",
                hint="check HF_ENDPOINT points at a Hugging Face Hub or mirror",
            )
        return sha

    def resolve(
        self, repo: str, revision: str | None, selection: Sequence[str]
    ) -> HFResolution:
        """Resolve ``revision`` to a commit and ``selection`` (names or globs) to files.

        Every literal name must exist and every pattern must match at least one file, else
        :class:`NotFoundError` naming the repo, commit and the missing names.
        """
        rev = revision or "main"
        commit = rev if _COMMIT.match(rev) else self.resolve_commit(repo, rev)
        literals = [s for s in selection if not is_glob(s)]
        patterns = [s for s in selection if is_glob(s)]
        found: dict[str, HFFile] = {}
        api = self._api()
        if literals:
            with self._errors(repo, rev):
                infos = api.get_paths_info(repo, literals, revision=commit)
            for info in infos:
                if _is_file(info):
                    found[info.path] = _to_file(repo, commit, info)
            missing = [name for name in literals if name not in found]
            if missing:
                raise NotFoundError(
                    f"{repo}@{rev} ({commit[:12]}) has no file {', '.join(missing)}",
                    hint=f"check the names at {license_page(repo)}/tree/{rev}",
                )
        if patterns:
            with self._errors(repo, rev):
                tree = list(api.list_repo_tree(repo, recursive=True, revision=commit))
            for pattern in patterns:
                hits = [e for e in tree if _is_file(e) and matches(e.path, pattern)]
                if not hits:
                    raise NotFoundError(
                        f"no file in {repo}@{rev} ({commit[:12]}) matches {pattern!r}",
                        hint="a pattern without '/' matches top-level files only; "
                        "use 'dir/*.safetensors' for a folder",
                    )
                for entry in hits:
                    found.setdefault(entry.path, _to_file(repo, commit, entry))
        files = tuple(sorted(found.values(), key=lambda f: f.path))
        return HFResolution(repo, rev, commit, files)

    def download(
        self,
        file: HFFile,
        staging: Path,
        *,
        expected_sha256: str | None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        """Fetch ``file`` into ``staging`` and verify it; return the verified staged path.

        ``staging`` must be on the models' filesystem and stable per file, so an interrupted
        download resumes. The trusted hash is ``expected_sha256`` (manifest or lock) and/or the
        LFS oid; for a small non-LFS file, the git blob id. A mismatch removes the staged file
        and raises :class:`IntegrityError`; nothing is placed.

        Setting ``cancel`` stops the transfer at its next block where huggingface_hub drives
        Phoenix's bar (>= 1.0); older releases finish the file they are on.
        """
        want = _trusted_sha(file, expected_sha256)
        if want is None and file.blob_id is None:
            raise IntegrityError(
                f"no trusted hash for {file.repo}/{file.path}: the Hub reported neither an "
                "LFS SHA256 nor a blob id",
                hint="set 'sha256' on the manifest entry",
            )
        from huggingface_hub import hf_hub_download

        staging.mkdir(parents=True, exist_ok=True)
        extra: dict[str, Any] = {}
        watch: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if progress is not None:
            label = f"hf:{file.repo}/{file.path}"
            if _accepts(hf_hub_download, "tqdm_class"):  # huggingface_hub >= 1.0 drives our bar
                extra["tqdm_class"] = functools.partial(
                    HubProgressBar, progress, label, cancel=cancel
                )
            else:  # older releases take no bar: watch the bytes arrive in staging instead
                from huggingface_hub.utils.tqdm import disable_progress_bars

                disable_progress_bars()  # Phoenix draws this transfer; no second bar from the hub
                watch = StagingWatch(progress, label, staging, file.size)
        with self._errors(file.repo, file.commit), watch:
            local = hf_hub_download(
                file.repo,
                file.path,
                revision=file.commit,
                local_dir=staging,
                endpoint=self._endpoint,
                token=self._token,
                **extra,
            )
        staged = Path(str(local))
        hashes = hash_file(staged, git_blob=want is None)
        if want is not None and hashes.sha256 != want:
            staged.unlink(missing_ok=True)
            raise IntegrityError(
                f"{file.repo}/{file.path}@{file.commit[:12]}: SHA256 mismatch, expected {want}, "
                f"got {hashes.sha256}; nothing was placed",
                hint="retry; if it persists the mirror serves wrong bytes",
            )
        if want is None and hashes.git_blob != file.blob_id:
            staged.unlink(missing_ok=True)
            raise IntegrityError(
                f"{file.repo}/{file.path}@{file.commit[:12]}: git blob id mismatch, expected "
                f"{file.blob_id}, got {hashes.git_blob}; nothing was placed"
            )
        return staged

    @contextlib.contextmanager
    def _errors(self, repo: str, revision: str) -> Iterator[None]:
        """Translate huggingface_hub's errors into Phoenix's, naming the repo and the fix."""
        from huggingface_hub import errors as hf

        transport_error = _transport_error(getattr(hf, "HTTPError", None))
        try:
            yield
        except hf.LocalEntryNotFoundError as exc:  # huggingface_hub's "could not connect"
            raise SourceError(
                f"cannot reach {self._endpoint} for {repo}",
                where=f"hf:{repo}",
                hint="check the network, or HF_ENDPOINT when using a mirror",
            ) from exc
        except hf.GatedRepoError as exc:
            raise AuthError(
                f"{repo} is gated and this token has no access to it",
                where=f"hf:{repo}",
                hint=f"accept the license at {license_page(repo)} while logged in, then set "
                "HUGGINGFACE_TOKEN to a token of that account"
                if self._has_token
                else f"accept the license at {license_page(repo)}, then set HUGGINGFACE_TOKEN "
                "(a read token from https://huggingface.co/settings/tokens)",
            ) from exc
        except hf.RepositoryNotFoundError as exc:
            raise NotFoundError(
                f"repository {repo} not found at {self._endpoint}",
                where=f"hf:{repo}",
                hint="check the name; a private repo also needs HUGGINGFACE_TOKEN"
                if not self._has_token
                else "check the name and that the token's account can see it",
            ) from exc
        except hf.RevisionNotFoundError as exc:
            raise NotFoundError(
                f"revision {revision!r} not found in {repo}", where=f"hf:{repo}"
            ) from exc
        except hf.EntryNotFoundError as exc:
            raise NotFoundError(f"file not found in {repo}@{revision}", where=f"hf:{repo}") from exc
        except hf.HfHubHTTPError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (401, 403):
                raise AuthError(
                    f"access to {repo} denied (HTTP {status})",
                    where=f"hf:{repo}",
                    hint="set HUGGINGFACE_TOKEN to a token that can read this repo",
                ) from exc
            raise SourceError(
                f"Hugging Face request for {repo} failed (HTTP {status})", where=f"hf:{repo}"
            ) from exc
        except transport_error as exc:  # transport: refused, reset, timeout
            raise SourceError(
                f"cannot reach {self._endpoint} for {repo}: {type(exc).__name__}",
                where=f"hf:{repo}",
                hint="check the network, or HF_ENDPOINT when using a mirror",
            ) from exc

def _transport_error(http_error: type[BaseException] | None) -> type[BaseException]:
    """The root error of the HTTP library huggingface_hub uses (found from its ``HTTPError``).

    huggingface_hub re-exports its library's ``HTTPError``: ``requests`` before 1.0, whose
    connection errors derive from ``requests.RequestException`` and not from ``HTTPError``;
    ``httpx``/``httpx2`` since, where ``HTTPError`` is the root. So take the top-most class of
    ``http_error``'s own package in its MRO. Without one, ``OSError`` (refused, reset, timeout).
    """
    if http_error is None:
        return OSError
    package = http_error.__module__.split(".")[0]
    root = http_error
    for cls in http_error.__mro__:
        if cls.__module__.split(".")[0] == package:
            root = cls
    return root


def _accepts(fn: Any, name: str) -> bool:
    """Whether callable ``fn`` takes a parameter called ``name`` (feature detection)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _is_file(entry: Any) -> bool:
    return type(entry).__name__ == "RepoFile"


def _to_file(repo: str, commit: str, entry: Any) -> HFFile:
    lfs = getattr(entry, "lfs", None)
    sha = getattr(lfs, "sha256", None) if lfs is not None else None
    return HFFile(
        repo=repo,
        path=entry.path,
        commit=commit,
        size=int(entry.size) if entry.size is not None else None,
        sha256=sha.lower() if isinstance(sha, str) else None,
        blob_id=getattr(entry, "blob_id", None),
    )


def _trusted_sha(file: HFFile, expected: str | None) -> str | None:
    """The SHA256 to verify against; the manifest/lock and the Hub must agree when both exist."""
    expected = expected.lower() if expected else None
    if expected and file.sha256 and expected != file.sha256:
        raise IntegrityError(
            f"{file.repo}/{file.path}@{file.commit[:12]}: the manifest/lock expects SHA256 "
            f"{expected} but the Hub's LFS oid is {file.sha256}; nothing was downloaded",
            hint="update 'sha256' (or rerun `phoenix lock`) if the repo changed on purpose",
        )
    return expected or file.sha256

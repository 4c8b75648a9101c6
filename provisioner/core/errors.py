"""One error hierarchy; the CLI maps each to an exit code and a message, never a traceback.

A user-facing error reads like a good compiler's: *where* (``file:line:col`` and key path, or the
env var and item), *what* was expected and found, and *how* to fix it.
"""

from __future__ import annotations


class PhoenixError(Exception):
    """Base of every error Phoenix raises on purpose; exit code 1 unless a subclass says so."""

    exit_code = 1

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def render(self) -> str:
        """The full user-facing text: ``where: message`` then an indented hint."""
        head = f"{self.where}: {self.message}" if self.where else self.message
        return f"{head}\n  hint: {self.hint}" if self.hint else head


class ManifestError(PhoenixError):
    """The manifest file cannot be read, parsed or validated."""


class EnvError(PhoenixError):
    """An environment variable or one of its items is invalid."""


class ConfigError(PhoenixError):
    """``config/versions.conf`` (or another shipped config) is invalid."""


class StateError(PhoenixError):
    """The workspace state or lock cannot be read or written."""


class LockLostError(StateError):
    """Another apply took this apply's volume lock over; this one stops before its next effect."""


class LockFileError(PhoenixError):
    """The lock file is missing, invalid, or out of date with the manifest."""


class SourceError(PhoenixError):
    """A model source (Hugging Face, Civitai, URL) refused or could not be resolved."""


class AuthError(SourceError):
    """Access denied: a token is missing, wrong, or the license is not accepted."""


class NotFoundError(SourceError):
    """The model, version, repository or file does not exist."""


class DownloadError(PhoenixError):
    """A transfer failed after its retries."""


class IntegrityError(DownloadError):
    """Downloaded bytes do not match the trusted SHA256. Nothing was placed."""


class DiskSpaceError(DownloadError):
    """Not enough free space for the planned downloads, or ENOSPC mid-transfer."""


class GitError(PhoenixError):
    """A git clone, fetch or checkout failed."""


class InstallError(PhoenixError):
    """A Python package installation failed."""


class GuardError(InstallError):
    """An install would replace a guarded package (torch, CUDA stack)."""


class GPUError(PhoenixError):
    """The GPU and the image's torch do not fit (e.g. no kernel image for this architecture)."""


class ServiceError(PhoenixError):
    """A supervised service failed past its restart budget."""


class InternalError(PhoenixError):
    """A bug in Phoenix. Exit code 3."""

    exit_code = 3


class ManifestErrors(ManifestError):
    """Several located manifest problems, reported together (most useful first)."""

    def __init__(self, problems: list[ManifestError]) -> None:
        first = problems[0]
        super().__init__(first.message, where=first.where, hint=first.hint)
        self.problems = problems

    def render(self) -> str:
        body = "\n".join(p.render() for p in self.problems)
        more = len(self.problems)
        return body if more == 1 else f"{more} problems in the manifest:\n{body}"

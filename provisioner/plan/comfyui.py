"""Kind ``comfyui`` (plan half): ComfyUI, the checkout Phoenix launches, at the pinned commit.

The desired repo/ref are the manifest's ``comfyui.repo``/``comfyui.ref``, else ``COMFYUI_REPO``/
``COMFYUI_COMMIT`` from versions.conf. Missing → clone; wrong commit → fetch and check out (``~``);
local modifications → refused unless ``--force``. ComfyUI's ``requirements.txt`` is checked
against the installed distributions; apply (:mod:`provisioner.actions.comfyui`) installs only
what is missing. ComfyUI runs with the workspace venv's interpreter (:func:`comfy_python`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provisioner.core.config import Versions
from provisioner.core.errors import GitError
from provisioner.core.layout import Layout
from provisioner.core.requirements import parse_requirements_file
from provisioner.manifest.desired import DesiredState
from provisioner.plan.change import Change
from provisioner.plan.context import ObserveContext
from provisioner.software import gitops, pyenv
from provisioner.software.guard import unmet

KIND = "comfyui"
ITEM_ID = "comfyui"


def comfy_python(layout: Layout) -> Path:
    """The interpreter ComfyUI runs with: the workspace venv's, or the base before it exists."""
    return pyenv.target_python(layout)


@dataclass(frozen=True)
class Target:
    """Where ComfyUI should be: repo URL, ref (commit or tag), checkout path, and origins."""

    repo: str
    ref: str
    path: Path
    origin: str
    required: bool = True


def target(desired: DesiredState, versions: Versions) -> Target:
    """The desired ComfyUI checkout: manifest values override versions.conf."""
    cfg = desired.manifest.comfyui
    origin = desired.scalar_origins.get("comfyui.ref") or (
        "manifest" if cfg.ref else "config/versions.conf"
    )
    return Target(
        repo=cfg.repo or versions.comfyui_repo,
        ref=cfg.ref or versions.comfyui_commit,
        path=Path(cfg.path),
        origin=origin,
        required=cfg.required,
    )


@dataclass(frozen=True)
class ComfyFacts:
    """What is on disk for the ComfyUI checkout (read-only)."""

    target: Target
    exists: bool
    is_repo: bool
    head: str | None
    #: the commit ``target.ref`` names locally, None when not resolvable without fetching
    wanted: str | None
    #: local modifications; only looked at when HEAD must move (None: not looked at)
    dirty: bool | None
    unsatisfied: tuple[str, ...]


def _unsatisfied(path: Path, layout: Layout) -> tuple[str, ...]:
    try:
        text = (path / "requirements.txt").read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return ()
    parsed = parse_requirements_file(text)
    if not parsed.requirements:
        return ()
    return unmet(parsed.requirements, pyenv.installed_distributions(pyenv.target_python(layout)))


def observe(desired: DesiredState, ctx: ObserveContext) -> ComfyFacts:
    """Read HEAD (from files), resolve the ref locally, check requirements; writes nothing."""
    tgt = target(desired, ctx.versions)
    path = tgt.path
    if not path.exists():
        return ComfyFacts(tgt, False, False, None, None, None, ())
    if gitops.git_dir(path) is None:
        return ComfyFacts(tgt, True, False, None, None, None, ())
    head = gitops.read_head(path)
    wanted: str | None = tgt.ref if gitops.HEX40.match(tgt.ref) else None
    if wanted is None:
        try:
            wanted = gitops.resolve_local(path, tgt.ref)[0]
        except GitError:
            wanted = None
    dirty = gitops.is_dirty(path) if head != wanted else None
    return ComfyFacts(tgt, True, True, head, wanted, dirty, _unsatisfied(path, ctx.layout))


def diff(desired: DesiredState, facts: ComfyFacts) -> list[Change]:
    """The one ComfyUI change (pure)."""
    tgt = facts.target
    details: dict[str, object] = {"path": str(tgt.path), "ref": tgt.ref}
    if not facts.exists:
        action, reason = "create", f"not installed: clone at {tgt.ref[:12]}"
    elif not facts.is_repo:
        action, reason = "update", f"{tgt.path} is not a git checkout (apply refuses; move it away)"
    elif facts.head != facts.wanted:
        head = facts.head[:12] if facts.head else "unknown"
        action, reason = "update", f"at {head}, want {tgt.ref[:12]}: fetch and check out"
        if facts.dirty:
            reason += "; has local modifications (apply refuses without --force)"
            details["dirty"] = True
    elif facts.unsatisfied:
        action, reason = "update", "requirements not satisfied: " + ", ".join(facts.unsatisfied)
    else:
        action, reason = "unchanged", f"at {tgt.ref[:12]}"
    return [
        Change(
            kind=KIND,
            action=action,  # type: ignore[arg-type]
            id=ITEM_ID,
            origin=tgt.origin,
            reason=reason,
            dest=str(tgt.path),
            source=f"{tgt.repo}@{tgt.ref}",
            item=tgt,
            details=details,
        )
    ]


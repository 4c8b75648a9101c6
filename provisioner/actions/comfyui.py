"""Kind ``comfyui`` (action half): clone or check out ComfyUI at the target commit, then install
what its ``requirements.txt`` misses through the torch guard. Facts and diff:
:mod:`provisioner.plan.comfyui`.
"""

from __future__ import annotations

from provisioner.actions.base import ApplyContext
from provisioner.core.errors import PhoenixError
from provisioner.plan.change import Change, ItemResult
from provisioner.plan.comfyui import ITEM_ID, KIND, Target
from provisioner.software import gitops, pyenv
from provisioner.software.guard import guarded_install


def apply(changes: list[Change], ctx: ApplyContext) -> list[ItemResult]:
    """Clone or check out ComfyUI at the target commit, then install missing requirements."""
    results: list[ItemResult] = []
    for change in changes:
        if change.kind != KIND or not change.pending:
            continue
        tgt: Target = change.item
        try:
            co = gitops.materialize(
                tgt.repo,
                tgt.ref,
                tgt.path,
                tgt.path.parent,
                force=ctx.force,
                what="ComfyUI",
            )
            ctx.store.set_comfyui_commit(co.commit)
            message = f"at {co.commit[:12]}"
            python = pyenv.ensure_venv(ctx.layout)
            if (tgt.path / "requirements.txt").is_file():
                outcome = guarded_install(
                    python,
                    [],
                    requirements_file=tgt.path / "requirements.txt",
                    what="ComfyUI requirements",
                    staging=ctx.layout.staging,
                )
                if outcome.ran:
                    message += f", installed {len(outcome.installed)} requirement(s)"
        except PhoenixError as exc:
            ctx.log.error("comfyui: %s", exc.render())
            results.append(ItemResult(ITEM_ID, KIND, False, exc.render(), tgt.required))
            continue
        ctx.log.info("comfyui: %s", message)
        results.append(ItemResult(ITEM_ID, KIND, True, message, tgt.required))
    return results

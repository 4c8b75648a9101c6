"""Kind ``comfyui`` (action half): clone or check out ComfyUI at the target commit, then install
what its ``requirements.txt`` misses through the torch guard. Facts and diff:
:mod:`provisioner.plan.comfyui`.
"""

from __future__ import annotations

from provisioner.actions.base import ApplyContext
from provisioner.core.errors import InstallError, PhoenixError
from provisioner.core.fsio import read_text_file
from provisioner.core.requirements import parse_requirements_file
from provisioner.plan.change import Change, ItemResult
from provisioner.plan.comfyui import ITEM_ID, KIND, Target
from provisioner.software import gitops, pyenv
from provisioner.software.guard import guarded_install, left_out_note


def apply(changes: list[Change], ctx: ApplyContext) -> list[ItemResult]:
    """Clone or check out ComfyUI at the target commit, then install missing requirements."""
    results: list[ItemResult] = []
    for change in changes:
        if change.kind != KIND or not change.pending:
            continue
        tgt: Target = change.item
        try:
            ctx.guard()
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
            req_file = tgt.path / "requirements.txt"
            if req_file.is_file():
                parsed = parse_requirements_file(
                    read_text_file(
                        req_file,
                        "ComfyUI's requirements.txt",
                        InstallError,
                        "fix the file in the ComfyUI checkout, or pin a ref where it is readable",
                    )
                )
                before = pyenv.installed_distributions(python)
                outcome = guarded_install(
                    python,
                    parsed.requirements,
                    # -r/-e lines pip must read itself: then the file goes as it is
                    requirements_file=req_file if parsed.opaque else None,
                    what="ComfyUI requirements",
                    staging=ctx.layout.staging,
                    before=before,
                    # a guarded one the image lacks (torchaudio) is left out, as at build
                    leave_out_absent=True,
                )
                if outcome.ran:
                    message += f", installed {len(outcome.installed)} requirement(s)"
                message += left_out_note(outcome.left_out)
        except PhoenixError as exc:
            ctx.log.error("comfyui: %s", exc.render())
            results.append(ItemResult(ITEM_ID, KIND, False, exc.render(), tgt.required))
            continue
        ctx.log.info("comfyui: %s", message)
        results.append(ItemResult(ITEM_ID, KIND, True, message, tgt.required))
    return results

"""Kind ``path``: the workspace folders, created private; a file in a folder's place is named."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from provisioner.actions import paths
from provisioner.actions.base import ApplyContext
from provisioner.core.config import load_versions
from provisioner.core.layout import Layout
from provisioner.manifest.merge import load_desired
from provisioner.plan import paths as paths_plan
from provisioner.plan.context import ObserveContext
from provisioner.state.store import StateStore, load_state


def _plan(layout: Layout) -> dict[str, tuple[str, str]]:
    desired, _ = load_desired(None, {"HF_REPOS_TO_DOWNLOAD": ""})
    facts = paths_plan.observe(desired, ObserveContext(layout, load_state(layout), load_versions()))
    return {c.id: (c.action, c.reason) for c in paths_plan.diff(desired, facts)}


def test_missing_folders_are_created_private_and_then_unchanged(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "ws")
    desired, _ = load_desired(None, {"HF_REPOS_TO_DOWNLOAD": ""})
    plan = _plan(layout)
    assert set(plan.values()) == {("create", "missing")}
    facts = paths_plan.observe(desired, ObserveContext(layout, load_state(layout), load_versions()))
    ctx = ApplyContext(layout, StateStore(layout), load_versions(), log=logging.getLogger("t"))
    results = paths.apply(paths_plan.diff(desired, facts), ctx)
    assert [r.ok for r in results] == [True] * len(paths_plan.FOLDERS)
    for folder in paths_plan.FOLDERS:
        assert stat.S_IMODE((layout.root / folder).stat().st_mode) == 0o700
    assert set(_plan(layout).values()) == {("unchanged", "exists")}


def test_a_file_or_broken_link_in_a_folders_place_is_named(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "ws")
    layout.root.mkdir()
    (layout.root / "custom_nodes").write_text("not a folder")
    (layout.root / "output").symlink_to(tmp_path / "gone")
    plan = _plan(layout)
    for folder in ("custom_nodes", "output"):
        action, reason = plan[f"path:{folder}"]
        assert action == "create" and "a file (or a broken link) has this name" in reason
    assert plan["path:models"] == ("create", "missing")

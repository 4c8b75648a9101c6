"""Storage mode decisions and space warnings (pure), and the mount-facts edge."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.runtime.storage import (
    GB,
    RUNPOD_VOLUME,
    MountFacts,
    assess_storage,
    free_bytes,
    read_mount_facts,
)

WS = Path("/workspace")
PLENTY = 500 * GB


@pytest.mark.parametrize(
    ("setting", "use_volume", "facts", "explicit", "mode", "root"),
    [
        ("auto", None, MountFacts(WS, True), False, "volume", WS),
        ("auto", None, MountFacts(WS, False), False, "ephemeral", WS),
        ("auto", None, MountFacts(WS, False, True), False, "volume", RUNPOD_VOLUME),
        ("auto", None, MountFacts(WS, False, True), True, "ephemeral", WS),
        ("auto", True, MountFacts(WS, True), False, "volume", WS),
        ("ephemeral", None, MountFacts(WS, True), False, "ephemeral", WS),
        ("volume", None, MountFacts(WS, False, True), False, "volume", RUNPOD_VOLUME),
    ],
)
def test_mode_table(
    setting: str, use_volume: bool | None, facts: MountFacts, explicit: bool, mode: str, root: Path
) -> None:
    report = assess_storage(setting, use_volume, facts, PLENTY, 0, 150, explicit)  # type: ignore[arg-type]
    assert (report.mode, report.root) == (mode, root)
    assert report.reason and not report.warnings


def test_use_volume_without_mount_warns() -> None:
    report = assess_storage("auto", True, MountFacts(WS, False), PLENTY, 0, 150)
    assert report.mode == "volume"
    assert "not a mount point" in report.warnings[0]


def test_space_warnings_name_numbers() -> None:
    low = assess_storage("auto", None, MountFacts(WS, False), 80 * GB, 30 * GB, 150)
    assert "80.0 GB free" in low.warnings[0] and "150 GB" in low.warnings[0]
    assert "30.0 GB" in low.warnings[0]
    short = assess_storage("auto", None, MountFacts(WS, False), 20 * GB, 35 * GB, 150)
    assert "needs 35.0 GB" in short.warnings[0] and "20.0 GB are free" in short.warnings[0]
    assert short.to_json()["free_gb"] == 20.0


def test_lenient_flag_for_shutdown_paths() -> None:
    from provisioner.manifest.envmap import flag_or_none

    assert flag_or_none("TRUE") is True and flag_or_none("0") is False
    assert flag_or_none("") is None and flag_or_none(None) is None and flag_or_none("maybe") is None


def test_edges_on_this_machine(tmp_path: Path) -> None:
    facts = read_mount_facts(tmp_path)
    assert facts.root_is_mount is False
    assert free_bytes(tmp_path / "not" / "yet") == free_bytes(tmp_path) > 0

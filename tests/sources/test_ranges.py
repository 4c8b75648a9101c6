"""Range bookkeeping and the resume map of a segmented ``.part``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.sources.ranges import (
    SegmentMap,
    done_prefix,
    merge_ranges,
    missing_ranges,
    split_pieces,
)


@pytest.mark.parametrize(
    ("done", "total", "merged", "missing", "prefix"),
    [
        ([], 10, [], [(0, 10)], 0),
        ([(0, 4), (4, 6)], 10, [(0, 6)], [(6, 10)], 6),
        ([(2, 3), (5, 10), (0, 1)], 10, [(0, 1), (2, 3), (5, 10)], [(1, 2), (3, 5)], 1),
        ([(0, 10)], 10, [(0, 10)], [], 10),
        ([(3, 3), (4, 8), (6, 9)], 10, [(4, 9)], [(0, 4), (9, 10)], 0),
    ],
)
def test_range_bookkeeping(
    done: list[tuple[int, int]],
    total: int,
    merged: list[tuple[int, int]],
    missing: list[tuple[int, int]],
    prefix: int,
) -> None:
    assert merge_ranges(done) == merged
    assert missing_ranges(done, total) == missing
    assert done_prefix(done) == prefix


def test_split_pieces_keeps_file_order_and_size() -> None:
    assert split_pieces([(0, 5), (7, 8)], 2) == [(0, 2), (2, 4), (4, 5), (7, 8)]


def test_map_lives_beside_the_part_and_round_trips_merged(tmp_path: Path) -> None:
    part = tmp_path / "abc.part"
    SegmentMap("http://h/f", 100, '"v1"', [(50, 60), (0, 10), (10, 20)]).save(part)

    assert SegmentMap.path_for(part) == tmp_path / "abc.part.segments.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abc.part.segments.json"]  # no temp
    assert json.loads(SegmentMap.path_for(part).read_text(encoding="utf-8")) == {
        "url": "http://h/f",
        "total": 100,
        "validator": '"v1"',
        "done": [[0, 20], [50, 60]],
    }
    assert SegmentMap.load(part) == SegmentMap("http://h/f", 100, '"v1"', [(0, 20), (50, 60)])


def test_save_replaces_the_old_map(tmp_path: Path) -> None:
    part = tmp_path / "abc.part"
    SegmentMap("http://h/f", 100, None, [(0, 10)]).save(part)
    SegmentMap("http://h/f", 100, None, [(0, 30)]).save(part)

    assert SegmentMap.load(part) == SegmentMap("http://h/f", 100, None, [(0, 30)])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{not json",
        "[]",
        '{"url": "u", "total": 1, "validator": null}',
        '{"url": "u", "total": "many", "validator": null, "done": []}',
        '{"url": "u", "total": 9, "validator": null, "done": [[0]]}',
    ],
)
def test_unreadable_map_is_none(tmp_path: Path, text: str) -> None:
    part = tmp_path / "abc.part"
    SegmentMap.path_for(part).write_text(text, encoding="utf-8")

    assert SegmentMap.load(part) is None


def test_non_string_validator_loads_as_none(tmp_path: Path) -> None:
    part = tmp_path / "abc.part"
    SegmentMap.path_for(part).write_text(
        '{"url": "u", "total": 9, "validator": 7, "done": [[0, 3]]}', encoding="utf-8"
    )

    assert SegmentMap.load(part) == SegmentMap("u", 9, None, [(0, 3)])


def test_drop_removes_the_map_and_tolerates_none(tmp_path: Path) -> None:
    part = tmp_path / "abc.part"
    SegmentMap("u", 9, None).save(part)
    SegmentMap.drop(part)
    SegmentMap.drop(part)

    assert SegmentMap.load(part) is None
    assert list(tmp_path.iterdir()) == []

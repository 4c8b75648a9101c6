"""Atomic writes replace files only; files the user asked for fail as located errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from provisioner.core.errors import PhoenixError
from provisioner.core.fsio import atomic_write_text, read_capped, write_output


def test_atomic_write_replaces_a_file_and_a_link_but_never_a_folder_or_pipe(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two", mode=0o644)
    assert target.read_text() == "two" and target.stat().st_mode & 0o777 == 0o644
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "elsewhere.json")
    atomic_write_text(link, "three")
    assert not link.is_symlink() and link.read_text() == "three"

    folder, pipe = tmp_path / "folder", tmp_path / "pipe"
    folder.mkdir()
    os.mkfifo(pipe)
    for path in (folder, pipe):
        with pytest.raises(OSError, match="not a regular file"):
            atomic_write_text(path, "x")
    assert folder.is_dir() and not os.listdir(folder) and not pipe.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "folder", "link.json", "out.json", "pipe",
    ]  # fmt: skip  (no temp file left behind)


def test_write_output_names_the_path_and_dash_is_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_output(Path("-"), "to stdout\n", "the snapshot")
    assert capsys.readouterr().out == "to stdout\n" and not Path("-").exists()

    (tmp_path / "afile").write_text("")
    for path in (tmp_path, tmp_path / "afile" / "x.json"):
        with pytest.raises(PhoenixError) as info:
            write_output(path, "x", "the snapshot")
        text = info.value.render()
        assert text.startswith(f"{path}: cannot write the snapshot: ") and "hint:" in text
    with pytest.raises(PhoenixError, match=r"afile is not a folder"):
        write_output(tmp_path / "afile" / "deeper" / "x.json", "x", "the lock file")
    write_output(tmp_path / "new" / "x.json", "ok", "the snapshot")
    assert (tmp_path / "new" / "x.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.timeout(30)
def test_read_capped_reads_regular_files_only_and_never_waits(tmp_path: Path) -> None:
    exact = tmp_path / "exact"
    exact.write_bytes(b"x" * 10)
    assert read_capped(exact, 10) == b"x" * 10
    with pytest.raises(OSError) as big:
        read_capped(exact, 9)
    assert big.value.errno == errno.EFBIG
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)  # no writer: a plain open would block for ever
    for path in (pipe, tmp_path):
        with pytest.raises(OSError) as refused:
            read_capped(path, 10)
        assert refused.value.errno == errno.EINVAL

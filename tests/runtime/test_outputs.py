"""runtime.outputs: an output path is refused before the work, creating nothing, naming the flag and why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.outputs import OutputPathError, check_output_dir, check_output_file


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_new_or_existing_directory_passes_and_nothing_is_created(tmp_path: Path) -> None:
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert check_output_dir(tmp_path) == tmp_path
    assert check_output_file(tmp_path / "report.json") == tmp_path / "report.json"
    assert _tree(tmp_path) == []


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("FILE", "--out {root}/FILE cannot be written: it is a file, not a directory"),
        ("FILE/sub", "--out {root}/FILE/sub cannot be written: {root}/FILE is a file, not a directory"),
        ("FILE/sub/deeper", "cannot be written: {root}/FILE is a file, not a directory"),
    ],
)
def test_a_directory_where_a_file_is_is_refused(tmp_path: Path, where: str, message: str) -> None:
    (tmp_path / "FILE").write_text("mine")
    with pytest.raises(OutputPathError) as info:
        check_output_dir(tmp_path / where, "--out")
    assert message.format(root=tmp_path) in str(info.value)
    assert _tree(tmp_path) == ["FILE"] and (tmp_path / "FILE").read_text() == "mine"


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("DIR", "--json {root}/DIR cannot be written: it is a directory; give a file name"),
        ("missing/dir/x.json", "--json {root}/missing/dir/x.json cannot be written: directory "
                               "{root}/missing/dir does not exist"),
        ("FILE/x.json", "cannot be written: {root}/FILE is a file, not a directory"),
    ],
)
def test_a_report_file_of_the_wrong_kind_is_refused(tmp_path: Path, where: str, message: str) -> None:
    (tmp_path / "DIR").mkdir()
    (tmp_path / "FILE").write_text("mine")
    with pytest.raises(OutputPathError) as info:
        check_output_file(tmp_path / where, "--json")
    assert message.format(root=tmp_path) in str(info.value)
    assert _tree(tmp_path) == ["DIR", "FILE"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (not writable, even by root)")
def test_an_unwritable_place_is_refused_even_for_root() -> None:
    with pytest.raises(OutputPathError, match="--out /proc/cllnn/run cannot be written: /proc is not writable"):
        check_output_dir("/proc/cllnn/run", "--out")
    with pytest.raises(OutputPathError, match="/proc is not writable"):
        check_output_file("/proc/cllnn.json", "--json")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes through permission bits")
def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(OutputPathError, match="is not writable"):
            check_output_dir(locked / "run", "--out")
    finally:
        locked.chmod(0o700)

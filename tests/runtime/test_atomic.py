"""Atomic writes: a final name holds a complete file or nothing new."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from runtime.atomic import atomic_path, write_json_atomic
from runtime.artifacts.manifest import sha256_file


def test_success_renames_into_place_with_the_usual_mode(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "model.keras"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp.suffix == ".keras" and tmp != final
        tmp.write_bytes(b"weights")
    assert final.read_bytes() == b"weights"
    assert final.stat().st_mode & 0o044, "file must be readable by others, not mkstemp's 0600"
    assert list(final.parent.iterdir()) == [final]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failure_keeps_the_previous_file_and_leaves_no_temporary(
    tmp_path: Path, error: BaseException
) -> None:
    final = tmp_path / "history.json"
    final.write_text("previous")
    with pytest.raises(type(error)):
        with atomic_path(final) as tmp:
            tmp.write_text("half-writ")
            raise error
    assert final.read_text() == "previous"
    assert list(tmp_path.iterdir()) == [final]


def test_json_and_checksum(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    text = path.read_text()
    assert text.index('"a"') < text.index('"b"') and text.endswith("\n")
    assert sha256_file(path) == hashlib.sha256(text.encode()).hexdigest()

"""``cllnn-export parity`` on manifests of the wrong shape or pointing outside: exit 2, one line.

The manifest is read, and every file it lists checked, before the trained model is
loaded, so a placeholder model file will do: no training here (the same cases on
real exported files: tests/export/test_parity.py, tests/runtime/test_manifest.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from export.cli.main import EXIT_USAGE, main
from runtime.artifacts.manifest import MANIFEST_NAME, sha256_file

MODEL_BYTES = b"placeholder for model.keras"


def _layout(tmp_path: Path) -> tuple[Path, Path, Path, dict[str, Any]]:
    """model.keras, artifacts/ with m.tflite and a manifest listing it, outside/ with a copy."""
    model, artifacts, outside = tmp_path / "model.keras", tmp_path / "artifacts", tmp_path / "outside"
    model.write_bytes(MODEL_BYTES)
    artifacts.mkdir()
    outside.mkdir()
    for directory in (artifacts, outside):
        (directory / "m.tflite").write_bytes(b"model bytes")
    tensor = {"name": "x", "shape": [-1, 28, 28, 1], "dtype": "float32"}
    entry = {"file": "m.tflite", "format": "tflite-fp32", "runtime": "litert", "precision": "float32",
             "sha256": sha256_file(outside / "m.tflite"), "size": 11, "inputs": [tensor],
             "outputs": [{**tensor, "shape": [-1, 10]}], "ops": {}}
    document = {"schema_version": 1, "artifacts": [entry],
                "source_model": {"file": str(model), "sha256": sha256_file(model)}}
    return model, artifacts, outside, document


@pytest.mark.parametrize("case", ["list", "text", "null", "deep", "ops_list", "source_model", "dotdot",
                                  "absolute", "passwd", "symlink"])
def test_parity_refuses_the_manifest_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    model, artifacts, outside, document = _layout(tmp_path)
    raw = {"list": "[]", "text": '"text"', "null": "null", "deep": "{" * 100_000}.get(case)
    entry = document["artifacts"][0]
    expected = {"list": "the top level: expected an object", "text": "the top level: expected an object",
                "null": "the top level: expected an object", "deep": "nested more than 20 levels deep",
                "ops_list": "artifacts[0].ops: expected an object of op name -> count, got a list",
                "source_model": "source_model: expected an object {file, sha256}, got a string 'text'",
                "symlink": "m.tflite is a symlink"}.get(case, "artifacts[0].file: expected a plain name of a file")
    if case == "ops_list":
        entry["ops"] = []
    elif case == "source_model":
        document["source_model"] = "text"
    elif case in ("dotdot", "absolute", "passwd"):
        entry["file"] = {"dotdot": "../outside/m.tflite", "absolute": str(outside / "m.tflite"),
                         "passwd": "/etc/passwd"}[case]
    elif case == "symlink":
        (artifacts / "m.tflite").unlink()
        (artifacts / "m.tflite").symlink_to(outside / "m.tflite")
    (artifacts / MANIFEST_NAME).write_text(raw if raw is not None else json.dumps(document))
    code = main(["parity", str(model), str(artifacts)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("cllnn-export parity: error: ") and expected in lines[0], err
    assert str(artifacts) in lines[0], err

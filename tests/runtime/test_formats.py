"""``cllnn-bench verify / select --formats``: only the asked formats' files, on a real run's artefacts.

The artefacts are the a8fda90 run's (tests/fixtures/run_a8fda90/artifacts: eight formats, stage probes,
a check set), copied so nothing is written beside the fixture. A user with a Pi ships one or two formats,
and CI times three on each emulated CPU: what is not asked must not be checked, timed or considered, and a
name the manifest does not hold must fail before anything runs (a typo would otherwise check nothing).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from export.formats.registry import parse_formats
from runtime.artifacts.manifest import format_names, load_manifest
from runtime.checks.parity import ParityReport
from runtime.cli.select import main as select_main
from runtime.cli.verify import main as verify_main
from runtime.deploy.choose import Selection
from runtime.errors import ManifestError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "run_a8fda90"
ASKED = "tflite-int8,tflite-dynamic,tflite-fp32"
FAST = ("--runs", "10", "--warmup", "1")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("formats") / "artifacts"
    shutil.copytree(FIXTURE / "artifacts", copy)
    return copy


def test_verify_checks_only_the_asked_formats_and_says_which(
        artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    every, some = tmp_path / "every.json", tmp_path / "some.json"
    verify_main([str(artifacts), "--json", str(every)])
    capsys.readouterr()
    code = verify_main([str(artifacts), "--formats", ASKED, "--json", str(some)])
    out = capsys.readouterr().out
    assert code == 1, out  # the fixture's int8 file fails its tolerance, asked or not
    full, part = ParityReport.load_json(every), ParityReport.load_json(some)
    assert full.formats is None and json.loads(every.read_text())["formats"] is None
    assert part.formats == ("tflite-int8", "tflite-dynamic", "tflite-fp32")
    assert json.loads(some.read_text())["formats"] == ["tflite-int8", "tflite-dynamic", "tflite-fp32"]
    # in the manifest's order, the same verdicts and figures as when every file is verified
    assert [r.file for r in part.results] == ["cllnn_fp32.tflite", "cllnn_dynamic.tflite", "cllnn_int8.tflite"]
    assert part.results == tuple(r for r in full.results if r.format in part.formats)
    assert part.skipped == ()
    assert len(full.results) + len(full.skipped) == 8
    assert "formats: tflite-int8, tflite-dynamic, tflite-fp32 asked (3 of the 8 files listed)" in out
    table = out.split("oldest set by")[1]  # the needs table lists the asked files only
    assert "cllnn_int8.tflite" in table and "cllnn_fp32.onnx" not in table and "cllnn_fp16.tflite" not in table


@pytest.mark.parametrize("command", ["verify", "select"])
def test_a_format_the_manifest_does_not_hold_exits_2_naming_those_it_holds(
        command: str, artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ([str(artifacts), "--formats", "tflite-int8,tflite-int9", "--json", str(out)] if command == "verify"
            else [str(artifacts), "--formats", "tflite-int8,tflite-int9", "--out", str(out), *FAST])
    code = (verify_main if command == "verify" else select_main)(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    assert "--formats: tflite-int9: not in the manifest; it holds tflite-fp32, tflite-fp16, tflite-dynamic, " \
           "tflite-int8, tflite-int16x8, onnx-fp32, onnx-int8, tflm-int8" in captured.err
    assert not out.exists()  # nothing checked, nothing written
    assert verify_main([str(artifacts), "--formats", " , "]) == 2
    assert "no format named" in capsys.readouterr().err


def test_select_considers_only_the_asked_formats(artifacts: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deploy"
    code = select_main([str(artifacts), "--formats", "tflite-dynamic,onnx-fp32", "--out", str(out), *FAST])
    printed = capsys.readouterr().out
    assert code == 0, printed
    selection = Selection.load_json(out / "selection.json")
    assert selection.formats == ("tflite-dynamic", "onnx-fp32")
    assert [c.file for c in selection.candidates] == ["cllnn_dynamic.tflite", "cllnn_fp32.onnx"]
    assert all(c.p50_us is not None for c in selection.candidates)  # both timed
    assert selection.chosen is not None and selection.chosen.file in {"cllnn_dynamic.tflite", "cllnn_fp32.onnx"}
    assert (out / selection.chosen.file).is_file()
    assert json.loads((out / "selection.json").read_text())["formats"] == ["tflite-dynamic", "onnx-fp32"]


def test_results_written_before_formats_load_as_every_format() -> None:
    """The run's own parity.json and selection.json predate ``formats``: read as all formats asked."""
    assert "formats" not in json.loads((FIXTURE / "parity.json").read_text())
    assert ParityReport.load_json(FIXTURE / "parity.json").formats is None
    assert Selection.load_json(FIXTURE / "selection.json").formats is None


def test_one_parser_of_a_format_list_for_the_device_and_the_export() -> None:
    assert format_names(" tflite-int8, tflite-fp32,,tflite-int8 ") == ("tflite-int8", "tflite-fp32")
    assert format_names(None) is None and format_names(["a", " b "]) == ("a", "b")
    assert [f.name for f in parse_formats(" tflite-int8, tflite-fp32,,tflite-int8 ")] == ["tflite-int8",
                                                                                         "tflite-fp32"]
    manifest = load_manifest(FIXTURE / "artifacts")
    assert [e.file for e in manifest.entries_of(("onnx-int8", "tflite-fp16"))] == ["cllnn_fp16.tflite",
                                                                                    "cllnn_int8.onnx"]
    assert manifest.entries_of(None) == manifest.artifacts
    with pytest.raises(ManifestError, match="tflite-int9: not in the manifest"):
        manifest.entries_of(("tflite-int9",))

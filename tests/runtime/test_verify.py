"""cllnn-bench verify on the runtime's tiny golden models: verdicts, refusals, reports, no TensorFlow.

The files are the session's tiny models (tests/runtime/conftest.py), listed in a
manifest with a check set holding Keras's own outputs on the test images (the
``artifacts`` fixture, ``tests.runtime.helpers.write_artifacts``). The same command
on a trained and converted CLLNN, with stage probes and a file from another
training: tests/export/test_parity.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from runtime.atomic import write_json_atomic
from runtime.artifacts.checkset import CHECK_SET_NAME, CheckSet, load_check_set, write_check_set
from runtime.cli.main import main as bench_main
from runtime.errors import CheckSetError
from runtime.artifacts.manifest import MANIFEST_NAME, Manifest, load_manifest
from runtime.checks.parity import ParityReport
from runtime.checks.verify import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from runtime.cli.verify import main
from tests.runtime.conftest import TinyModels
from tests.runtime.helpers import FILES, REPO, describe, manifest_entry, run_python


def _rewrite_manifest(out: Path, manifest: Manifest) -> None:
    write_json_atomic(out / MANIFEST_NAME, manifest.to_dict())


def test_good_files_pass_and_the_reports_are_parity_s(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_json, report_xml = tmp_path / "verify.json", tmp_path / "verify.xml"
    code = main([str(artifacts), "--json", str(report_json), "--junit", str(report_xml), "--threads", "1"])
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    assert out.rstrip().endswith("PASSED")
    assert sum(line.startswith("[") and " ok " in line for line in out.splitlines()) == len(FILES)
    report = ParityReport.load_json(report_json)
    assert bool(report) and report.images == len(load_check_set(artifacts, load_manifest(artifacts)))
    assert report.tolerances["int8"]["min_top1"] == 0.8  # the table the manifest recorded
    assert report.tolerances["float32"]["max_abs"] == 1e-5  # ... over the defaults
    assert [r.file for r in report.results] == list(FILES)
    for result in report.results:
        assert result.stage_note.startswith("no stage probe")
        if result.precision == "float32":
            assert result.metrics["max_abs"] <= 1e-5
    assert report.reference_accuracy == pytest.approx(56 / 64)
    suite = ET.parse(report_xml).getroot().find("testsuite")
    assert suite.get("name") == "cllnn-verify"
    assert int(suite.get("tests")) == sum(len(r.checks) for r in report.results) > 0
    assert suite.findall("testcase/failure") == []
    assert {case.get("classname") for case in suite.findall("testcase")} == {
        f"verify.{fmt}" for fmt, _ in FILES.values()}


def test_an_altered_reference_fails_the_comparison(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stored outputs are changed and the manifest's checksum updated: the comparison must catch it."""
    manifest = load_manifest(artifacts)
    stored = load_check_set(artifacts, manifest)
    altered = stored.reference["output"].copy()
    altered[0] = np.roll(altered[0], 1)  # one image's probabilities, another class on top
    record = write_check_set(artifacts / CHECK_SET_NAME, replace(stored, reference={"output": altered}),
                             source="tiny", split="test")
    _rewrite_manifest(artifacts, replace(manifest, check_set=record))
    report_xml = tmp_path / "verify.xml"
    code = main([str(artifacts), "--junit", str(report_xml)])
    out = capsys.readouterr().out
    assert code == EXIT_FAILED, out
    assert out.rstrip().endswith("FAILED")
    assert "FAILED tflite-fp32 (fp32.tflite): max_abs" in out
    failures = ET.parse(report_xml).getroot().findall("testsuite/testcase/failure")
    assert {f.get("message").split(" ")[0] for f in failures} >= {"tflite-fp32", "onnx-fp32"}


def test_a_file_swapped_with_a_valid_manifest_entry_fails(
    tiny: TinyModels, artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another model's bytes under fp32.tflite, its checksum and size rewritten: only its numbers give it away."""
    shutil.copy(tiny.int8_tflite, artifacts / "fp32.tflite")
    manifest = load_manifest(artifacts)
    swapped = manifest_entry(artifacts / "fp32.tflite", tiny.int8_tflite, "tflite-fp32", "float32")
    entries = tuple(swapped if e.file == "fp32.tflite" else e for e in manifest.artifacts)
    _rewrite_manifest(artifacts, replace(manifest, artifacts=entries))
    report_json = tmp_path / "verify.json"
    code = main([str(artifacts), "--json", str(report_json)])
    assert code == EXIT_FAILED, capsys.readouterr().out
    report = ParityReport.load_json(report_json)
    assert [r.file for r in report.results if not r.passed] == ["fp32.tflite"]


def _drop_check_set(out: Path) -> str:
    _rewrite_manifest(out, replace(load_manifest(out), check_set=None))
    return "lists no check set"


def _flip_check_set_byte(out: Path) -> str:
    data = bytearray((out / CHECK_SET_NAME).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / CHECK_SET_NAME).write_bytes(bytes(data))
    return "does not match its manifest checksum"


def _flip_model_byte(out: Path) -> str:
    data = bytearray((out / "int8.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "int8.onnx").write_bytes(bytes(data))
    return "int8.onnx does not match its manifest: SHA-256"


@pytest.mark.parametrize(("case", "args", "edit"), [
    ("missing_dir", ["nowhere"], None),
    ("no_manifest", [], lambda out: (out / MANIFEST_NAME).unlink() or "manifest not found"),
    ("no_check_set_entry", [], _drop_check_set),
    ("check_set_missing", [], lambda out: (out / CHECK_SET_NAME).unlink() or "listed in the manifest but missing"),
    ("check_set_checksum", [], _flip_check_set_byte),
    ("model_checksum", [], _flip_model_byte),
    ("bad_tolerance", ["--tolerance", "int8.min_top1=2"], lambda out: "min_top1 must be >= 0 and <= 1"),
    ("bad_threads", ["--threads", "0"], lambda out: "--threads must be >= 1"),
    ("json_is_a_directory", ["--json", "."], lambda out: "--json . cannot be written: it is a directory"),
    ("junit_in_a_missing_directory", ["--junit", "/nonexistent/dir/x.xml"],
     lambda out: "--junit /nonexistent/dir/x.xml cannot be written: directory /nonexistent/dir does not exist"),
])
def test_bad_input_exits_2_with_what_is_wrong(
    artifacts: Path, capsys: pytest.CaptureFixture[str], case: str, args: list[str], edit
) -> None:
    if case == "missing_dir":
        target, expected = artifacts / "nowhere", "artifacts directory not found"
        args = []
    else:
        target, expected = artifacts, edit(artifacts)
    code = main([str(target), *args])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert expected in err and "Traceback" not in err


def test_the_check_set_round_trips_and_refuses_bad_arrays(tiny: TinyModels, tmp_path: Path) -> None:
    labels = np.arange(len(tiny.images)) % 10
    record = write_check_set(tmp_path / CHECK_SET_NAME, CheckSet(tiny.images, labels, {"output": tiny.reference}),
                             source="tiny", split="test")
    assert record.file == CHECK_SET_NAME and record.stages == ("output",) and record.images == len(tiny.images)
    manifest = Manifest((), check_set=record)
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest
    with np.load(tmp_path / CHECK_SET_NAME, allow_pickle=False) as data:
        assert sorted(data.files) == ["images", "labels", "reference_output"]
    loaded = load_check_set(tmp_path, manifest)
    np.testing.assert_array_equal(loaded.images, tiny.images)
    np.testing.assert_array_equal(loaded.reference["output"], tiny.reference)
    with pytest.raises(CheckSetError, match="uint8"):
        CheckSet(tiny.images.astype(np.float32), labels, {"output": tiny.reference})
    with pytest.raises(CheckSetError, match="reference_output"):
        CheckSet(tiny.images, labels, {"cnn": tiny.reference})
    with pytest.raises(CheckSetError, match="one per image"):
        CheckSet(tiny.images, labels, {"output": tiny.reference[:3]})


# -- independence from TensorFlow ---------------------------------------------------------------
NO_TENSORFLOW_SCRIPT = """
import runpy
import sys
entry, artifacts = sys.argv[1], sys.argv[2]
if entry == "module":  # python -m runtime.cli.verify ARTIFACTS_DIR
    sys.argv = ["runtime.checks.verify", artifacts]
    try:
        runpy.run_module("runtime.cli.verify", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
else:  # cllnn-bench verify ARTIFACTS_DIR
    from runtime.cli.main import main
    code = main(["verify", artifacts])
heavy = ("tensorflow", "keras", "tf2onnx", "onnx", "cllnn_edge", "export")
print("exit:", code)
print("heavy:", sorted(name for name in heavy if name in sys.modules))
"""


@pytest.mark.parametrize("entry", ["module", "cllnn-bench"])
def test_verify_never_imports_tensorflow(artifacts: Path, entry: str) -> None:
    result = run_python(NO_TENSORFLOW_SCRIPT, entry, str(artifacts))
    assert result.returncode == 0, describe(result)
    assert "exit: 0" in result.stdout and "heavy: []" in result.stdout, describe(result)


def test_the_console_script_dispatches_verify_and_keeps_the_benchmark(artifacts: Path) -> None:
    script = Path(sys.executable).parent / "cllnn-bench"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    verified = subprocess.run([str(script), "verify", str(artifacts)], capture_output=True, text=True,
                              env=env, timeout=120)
    assert verified.returncode == 0 and verified.stdout.rstrip().endswith("PASSED"), verified.stderr
    timed = subprocess.run([str(script), str(artifacts / "int8.tflite"), "--runs", "3", "--warmup", "0"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert timed.returncode == 0 and "p50 us" in timed.stdout, timed.stderr
    assert bench_main(["verify", str(artifacts / "nowhere")]) == EXIT_USAGE

"""The parity gate: verdicts a CI job can act on, reports it can keep, clear refusals.

And the same gate on a device (``cllnn-bench verify``), against the check set convert kept:
the same verdicts on the same images, and failures when a stored output or a file is swapped.
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

from cllnn_edge.config import Config, ModelConfig, TrainConfig
from cllnn_edge.data import Split, Splits, load_splits
from cllnn_edge.train import train
from export.cli.main import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, main
from export.pipeline.convert import ConvertJob, convert
from export.checks.parity import run_parity
from export.graph.stages import PROBE_OUTPUTS
from runtime.atomic import write_json_atomic
from runtime.artifacts.checkset import CHECK_SET_NAME, load_check_set, write_check_set
from runtime.artifacts.manifest import MANIFEST_NAME, load_manifest, sha256_file
from runtime.checks.parity import ParityReport
from runtime.checks.tolerances import ToleranceConfig

pytestmark = pytest.mark.slow  # trains a small model and converts it to three formats

SMALL = Config(
    model=ModelConfig(conv_filters=(8, 16, 16), reservoir_dim=64, lstm_units=16),
    train=TrainConfig(epochs=3),
)
FORMATS = ("tflite-fp32", "tflite-int8", "onnx-fp32")
LIMIT = ["--limit", "300"]
# SMALL, 3 epochs on 1,500 images, is barely trained (probabilities near uniform), so int8 flips
# many top-1 classes: 262-276 of the 300 images agreed over model seeds 0-4 (x86 AVX-512 VNNI,
# 2026-11-29), accuracy 1-5 images lower. These limits (240 and 15 images) stay clear of that
# spread; this test is about the report, the default gate's verdicts are tested on the seed model.
INT8_GATE = ["--tolerance", "int8.min_top1=0.8", "--tolerance", "int8.max_accuracy_drop=0.05"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CLLNN trained briefly on embedded digits, converted to three formats."""
    root = tmp_path_factory.mktemp("parity")
    full = load_splits("embedded")
    splits = Splits(Split(full.train.x[:1500], full.train.y[:1500]), full.val, full.test, "embedded")
    train(SMALL, splits, root / "run", verbose=0)
    convert(ConvertJob.from_config(root / "run" / "model.keras", root / "run" / "artifacts",
                                   SMALL.replace("export", formats=FORMATS), data="embedded"))
    return root / "run"


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def test_float_exports_pass_and_reports_validate(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_json, report_xml = tmp_path / "parity.json", tmp_path / "parity.xml"
    code = main(["parity", str(exported / "model.keras"), str(exported / "artifacts"), *LIMIT,
                 *INT8_GATE,
                 "--json", str(report_json), "--junit", str(report_xml)])
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    assert out.rstrip().endswith("PASSED")
    report = ParityReport.load_json(report_json)
    assert bool(report) and report.images == 300 and report.split == "test"
    assert report.tolerances["int8"]["min_top1"] == 0.8  # overrides are echoed
    assert report.tolerances["dynamic-int8"]["min_top1"] == 0.99  # ... in their own row only
    assert {r.format for r in report.results} == set(FORMATS)
    for result in report.results:
        assert set(result.metrics) >= {"max_abs", "mean_abs", "cosine_mean", "top1_agreement",
                                       "accuracy", "reference_accuracy", "accuracy_delta"}
        assert [s.stage for s in result.stages] == ["cnn", "reservoir", "lstm", "output"]
    fp32 = next(r for r in report.results if r.format == "tflite-fp32")
    assert fp32.metrics["max_abs"] <= 1e-5 and fp32.first_failing_stage is None
    int8 = next(r for r in report.results if r.format == "tflite-int8")  # where its error enters, said once
    entry = int8.error_entry
    assert entry is not None and entry.stage in PROBE_OUTPUTS and 0 < entry.share <= 1
    progress = {line.split()[1]: line for line in out.splitlines() if line.startswith("[")}
    assert progress["tflite-int8"].endswith(f"most error enters at: {entry.describe()}")
    assert "most error enters" not in progress["tflite-fp32"]
    assert next(line for line in out.splitlines() if line.startswith("tflite-int8")).endswith(entry.describe())
    suite = ET.parse(report_xml).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == sum(len(r.checks) for r in report.results) == int(suite.get("tests"))
    assert suite.findall("testcase/failure") == []
    assert ParityReport.from_dict(json.loads(report_json.read_text())) == report


def test_int8_calibrated_on_blank_images_fails_and_says_where(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blank = tmp_path / "blank.npz"
    labels = np.arange(200) % 10
    np.savez(blank, x_train=np.zeros((200, 28, 28), np.uint8), y_train=labels,
             x_test=np.zeros((20, 28, 28), np.uint8), y_test=labels[:20])
    run = _copy(exported, tmp_path)
    broken = tmp_path / "broken"
    convert(ConvertJob.from_config(run / "model.keras", broken,
                                   SMALL.replace("export", formats=("tflite-int8",), calibration_size=8), data=str(blank)))
    report_xml = tmp_path / "parity.xml"
    code = main(["parity", str(run / "model.keras"), str(broken), *LIMIT, "--junit", str(report_xml)])
    out = capsys.readouterr().out
    assert code == EXIT_CHECK_FAILED
    assert out.rstrip().endswith("FAILED")
    row = next(line for line in out.splitlines() if line.startswith("tflite-int8"))
    assert "top1_agreement FAIL" in row
    failures = ET.parse(report_xml).getroot().findall("testsuite/testcase/failure")
    assert failures and all("tflite-int8" in f.get("message") for f in failures)
    report = run_parity(run / "model.keras", broken, data="embedded", limit=300)
    result = report.results[0]
    assert not result.passed and result.first_failing_stage in ("cnn", "reservoir", "lstm", "output")
    assert result.first_failing_stage in row


@pytest.mark.parametrize("case", ["no_manifest", "missing_file", "checksum", "other_model", "split",
                                  "file_outside", "symlinked_file"])
def test_bad_input_exits_2_with_what_to_fix(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    run = _copy(exported, tmp_path)
    model, artifacts = run / "model.keras", run / "artifacts"
    args = []
    if case == "no_manifest":
        (artifacts / "manifest.json").unlink()
        expected = "manifest not found"
    elif case == "missing_file":
        (artifacts / "cllnn_fp32.onnx").unlink()
        expected = "cllnn_fp32.onnx is listed in the manifest but missing"
    elif case == "checksum":
        path = artifacts / "cllnn_int8.tflite"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        expected = "does not match its manifest: SHA-256"
    elif case == "other_model":
        other = load_manifest(artifacts)  # the manifest stays; the model is another training's
        assert other.artifacts
        train(SMALL.replace("train", epochs=1).replace("model", seed=9),
              load_splits("embedded"), tmp_path / "other", verbose=0)
        model = tmp_path / "other" / "model.keras"
        expected = "is not the model these artefacts were exported from"
    elif case == "file_outside":  # a valid model elsewhere, its checksum right: was loaded and PASSED
        outside = Path(shutil.copyfile(artifacts / "cllnn_fp32.tflite", tmp_path / "cllnn_fp32.tflite"))
        document = json.loads((artifacts / MANIFEST_NAME).read_text())
        next(a for a in document["artifacts"] if a["file"] == outside.name)["file"] = str(outside)
        (artifacts / MANIFEST_NAME).write_text(json.dumps(document))
        expected = "file: expected a plain name of a file inside the artefacts directory"
    elif case == "symlinked_file":
        target = Path(shutil.move(artifacts / "cllnn_int8.tflite", tmp_path / "cllnn_int8.tflite"))
        (artifacts / target.name).symlink_to(target)
        expected = "cllnn_int8.tflite is a symlink"
    else:
        args = ["--split", "holdout"]
        expected = "unknown split 'holdout'"
    code = main(["parity", str(model), str(artifacts), *LIMIT, *args])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert expected in err and "Traceback" not in err


@pytest.mark.parametrize(("assignment", "expected"), [
    ("float32.max_rel=1", "unknown tolerance(s) ['max_rel'] for float32"),
    ("int4.min_top1=0.9", "no tolerances for precision 'int4'"),
    ("quantized_min_top1=0.9", "--tolerance takes PRECISION.LIMIT=NUMBER"),
    ("int8.min_top1=high", "--tolerance takes PRECISION.LIMIT=NUMBER"),
    ("int8.min_top1=1.5", "min_top1 must be >= 0 and <= 1"),
])
def test_unknown_tolerance_is_a_usage_error(
    exported: Path, capsys: pytest.CaptureFixture[str], assignment: str, expected: str
) -> None:
    code = main(["parity", str(exported / "model.keras"), str(exported / "artifacts"),
                 "--tolerance", assignment])
    assert code == EXIT_USAGE
    assert expected in capsys.readouterr().err


# -- the same gate on a device: cllnn-bench verify, against the check set convert kept -----------
def _verify(artifacts: Path, *args: str) -> int:
    from runtime.cli.verify import main as verify_main

    return verify_main([str(artifacts), *INT8_GATE, *args])


def test_verify_on_the_device_gives_parity_s_verdicts(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check set holds the first 300 test images: verify's numbers are parity's with --limit 300."""
    artifacts = exported / "artifacts"
    manifest = load_manifest(artifacts)
    record = manifest.check_set
    assert record is not None and record.file == CHECK_SET_NAME and record.images == SMALL.export.check_set_size
    assert record.stages == PROBE_OUTPUTS and sha256_file(artifacts / record.file) == record.sha256
    report_json, report_xml = tmp_path / "verify.json", tmp_path / "verify.xml"
    code = _verify(artifacts, "--json", str(report_json), "--junit", str(report_xml))
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    verified = ParityReport.load_json(report_json)
    parity = run_parity(exported / "model.keras", artifacts, data="embedded", limit=record.images,
                        tolerances=verified_tolerances(verified))
    assert bool(verified) and bool(parity)
    for mine, theirs in zip(verified.results, parity.results, strict=True):
        assert mine.file == theirs.file and [c.passed for c in mine.checks] == [c.passed for c in theirs.checks]
        assert mine.metrics == pytest.approx(theirs.metrics, abs=1e-6)
        assert [s.stage for s in mine.stages] == list(PROBE_OUTPUTS)
        assert (mine.error_entry is None) == (theirs.error_entry is None) == (mine.precision == "float32")
    assert verified.reference_confusion == parity.reference_confusion
    int8 = next(r for r in verified.results if r.format == "tflite-int8")
    assert int8.error_entry is not None and f"most error enters at: {int8.error_entry.describe()}" in out
    assert ET.parse(report_xml).getroot().find("testsuite").get("name") == "cllnn-verify"


def verified_tolerances(report: ParityReport) -> ToleranceConfig:
    return ToleranceConfig.from_dict(report.tolerances)


def test_verify_fails_when_a_stored_output_is_altered(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The manifest's checksum is updated to match, so it is the comparison that catches it."""
    artifacts = _copy(exported, tmp_path) / "artifacts"
    manifest = load_manifest(artifacts)
    stored = load_check_set(artifacts, manifest)
    reference = dict(stored.reference)
    reference["output"] = reference["output"][:, ::-1].copy()  # each image's classes reversed
    record = write_check_set(artifacts / CHECK_SET_NAME, replace(stored, reference=reference),
                             source=manifest.check_set.source, split=manifest.check_set.split)
    write_json_atomic(artifacts / MANIFEST_NAME, replace(manifest, check_set=record).to_dict())
    assert _verify(artifacts) == EXIT_CHECK_FAILED
    out = capsys.readouterr().out
    assert out.rstrip().endswith("FAILED") and "FAILED tflite-fp32 (cllnn_fp32.tflite): max_abs" in out


def test_verify_fails_on_a_file_from_another_training(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another model's float32 file slipped in, its manifest entry's checksum and size rewritten."""
    artifacts = _copy(exported, tmp_path) / "artifacts"
    full = load_splits("embedded")
    other_cfg = SMALL.replace("train", epochs=1).replace("model", seed=9)
    train(other_cfg, Splits(Split(full.train.x[:500], full.train.y[:500]), full.val, full.test, "embedded"),
          tmp_path / "other", verbose=0)
    convert(ConvertJob.from_config(tmp_path / "other" / "model.keras", tmp_path / "other" / "artifacts",
                                   other_cfg.replace("export", formats=("tflite-fp32",)), data="embedded"))
    shutil.copy(tmp_path / "other" / "artifacts" / "cllnn_fp32.tflite", artifacts / "cllnn_fp32.tflite")
    manifest = load_manifest(artifacts)
    path = artifacts / "cllnn_fp32.tflite"
    entries = tuple(replace(e, sha256=sha256_file(path), size=path.stat().st_size)
                    if e.file == path.name else e for e in manifest.artifacts)
    write_json_atomic(artifacts / MANIFEST_NAME, replace(manifest, artifacts=entries).to_dict())
    report_json = tmp_path / "verify.json"
    assert _verify(artifacts, "--json", str(report_json)) == EXIT_CHECK_FAILED, capsys.readouterr().out
    report = ParityReport.load_json(report_json)
    assert [r.file for r in report.results if not r.passed] == ["cllnn_fp32.tflite"]


def test_verify_without_tensorflow_on_converted_files(exported: Path) -> None:
    """python -m runtime.cli.verify in a fresh process: the stage probes too, and no TensorFlow imported."""
    script = ("import runpy, sys\nsys.argv = ['runtime.cli.verify', *sys.argv[1:]]\n"
              "try:\n    runpy.run_module('runtime.cli.verify', run_name='__main__', alter_sys=True)\n"
              "except SystemExit as exc:\n    print('exit:', exc.code)\n"
              "heavy = ('tensorflow', 'keras', 'cllnn_edge', 'export')\n"
              "print('heavy:', sorted(m for m in heavy if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script, str(exported / "artifacts"), *INT8_GATE],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert "exit: 0" in done.stdout and "heavy: []" in done.stdout, done.stdout + done.stderr[-2000:]


def test_a_signed_export_passes_parity_and_verify_with_its_key_only(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sign the converted files; parity with --trusted-key passes, another key is refused (exit 2), and
    python -m runtime.cli.verify --trusted-key passes in a fresh process that never imports TensorFlow."""
    from runtime.artifacts.signing import PRIVATE_KEY_NAME, PUBLIC_KEY_NAME, generate_keys

    run = _copy(exported, tmp_path)
    assert main(["keygen", "--out", str(tmp_path / "keys")]) == EXIT_OK
    other = generate_keys(tmp_path / "other")
    assert main(["sign", str(run / "artifacts"), "--key", str(tmp_path / "keys" / PRIVATE_KEY_NAME)]) == EXIT_OK
    trusted = str(tmp_path / "keys" / PUBLIC_KEY_NAME)
    code = main(["parity", str(run / "model.keras"), str(run / "artifacts"), *LIMIT, *INT8_GATE,
                 "--trusted-key", trusted])
    assert code == EXIT_OK, capsys.readouterr().out
    capsys.readouterr()
    code = main(["parity", str(run / "model.keras"), str(run / "artifacts"), *LIMIT,
                 "--trusted-key", str(other.public)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "is signed by another key" in err, err
    script = ("import runpy, sys\nsys.argv = ['runtime.cli.verify', *sys.argv[1:]]\n"
              "try:\n    runpy.run_module('runtime.cli.verify', run_name='__main__', alter_sys=True)\n"
              "except SystemExit as exc:\n    print('exit:', exc.code)\n"
              "heavy = ('tensorflow', 'keras', 'cllnn_edge', 'export')\n"
              "print('heavy:', sorted(m for m in heavy if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script, str(run / "artifacts"), *INT8_GATE,
                           "--trusted-key", trusted], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert "exit: 0" in done.stdout and "heavy: []" in done.stdout, done.stdout + done.stderr[-2000:]

"""Train -> convert, as a user runs it (`cllnn-export run`, and train then convert for T > 1):
every format loads in its device runtime and matches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import cllnn_edge  # noqa: F401  (registers the custom layers for load_model)
import runtime
from cllnn_edge.data import load_splits
from export.file_checks import float_kernels
from runtime.manifest import load_manifest, sha256_file
from tests.e2e.conftest import gate_flags

pytestmark = pytest.mark.slow  # trains and converts full-size models

CLI = str(Path(sys.executable).parent / "cllnn-export")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=1800)


def _train_and_convert(tmp: Path, config_text: str) -> tuple[Path, Path, subprocess.CompletedProcess]:
    config = tmp / "config.toml"
    config.write_text(config_text)
    trained = _run("train", "--data", "embedded", "--out", str(tmp / "run"), "--config", str(config))
    assert trained.returncode == 0, trained.stderr[-3000:]
    artifacts = tmp / "run" / "artifacts"
    converted = _run("convert", str(tmp / "run" / "model.keras"), "--out", str(artifacts),
                     "--config", str(config))
    return tmp / "run" / "model.keras", artifacts, converted


@pytest.fixture(scope="module")
def test_split():
    return load_splits("embedded").test


def _keras_probs(model_path: Path, images: np.ndarray) -> np.ndarray:
    model = keras.saving.load_model(model_path)
    return model.predict(images.astype(np.float32)[..., None], verbose=0, batch_size=256)


# Of the 1,000 test images, int8 files of a 3-epoch model disagree with Keras on the top-1 class
# of (over model seeds 0-4, x86 AVX-512 VNNI, 2026-11-29, benchmarks/SPREAD.md):
# T = 1: 1-6 (TFLite), 1-9 (ONNX); T = 3: 3-12, 4-13; T = 9: 5-20, 5-11; dynamic-range 0-3.
# Another CPU class trains another model from the same seed, as a change of seed does. The
# export-time floor (convert_min_top1 0.98: at most 20) is met with no slack at T = 9; these
# tests allow 50 (0.95), 2.5 times the worst seen, and say so to convert for T > 1.
MIN_QUANTIZED_AGREEMENT = 0.95
LONG_SEQUENCE_GATE = (f"[tolerances.int8]\nconvert_min_top1 = {MIN_QUANTIZED_AGREEMENT}\n"
                      f"[tolerances.dynamic-int8]\nconvert_min_top1 = {MIN_QUANTIZED_AGREEMENT}\n")


def _assert_formats_match(model_path: Path, artifacts: Path, images: np.ndarray) -> dict:
    reference = _keras_probs(model_path, images)
    manifest = load_manifest(artifacts)
    sizes = {}
    for entry in manifest.artifacts:
        path = artifacts / entry.file
        assert sha256_file(path) == entry.sha256
        with runtime.load(path) as model:
            probs = model.predict(images)
        assert probs.shape == (len(images), 10) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-2)
        if entry.precision == "float32":
            assert np.abs(probs - reference).max() <= 1e-5, entry.format
        elif entry.precision == "float16":
            assert np.abs(probs - reference).max() <= 1e-2, entry.format
        else:
            agreeing = int(np.sum(probs.argmax(1) == reference.argmax(1)))
            assert agreeing >= MIN_QUANTIZED_AGREEMENT * len(images), (entry.format, agreeing)
        sizes[entry.format] = entry.size
    return sizes


def test_every_format_exports_loads_and_matches_keras(seed_run, test_split) -> None:
    model_path, artifacts, converted = seed_run
    assert converted.returncode == 0, converted.stdout[-3000:] + converted.stderr[-3000:]
    assert "PASSED" in converted.stdout
    sizes = _assert_formats_match(model_path, artifacts, test_split.x)
    assert set(sizes) == {
        "tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8", "onnx-fp32", "onnx-int8"
    }
    assert sizes["tflite-int8"] <= 0.30 * sizes["tflite-fp32"]


def test_manifest_describes_each_file(seed_run) -> None:
    _, artifacts, _ = seed_run
    data = json.loads((artifacts / "manifest.json").read_text())
    assert data["config"]["model"]["reservoir_dim"] == 512
    assert data["unroll"]["weight_bytes"] == 1_573_376
    assert data["versions"]["onnxruntime"] and data["versions"]["tensorflow-cpu" if
           "tensorflow-cpu" in data["versions"] else "tensorflow"]
    manifest = load_manifest(artifacts)
    int8 = next(a for a in manifest.artifacts if a.format == "tflite-int8")
    assert (int8.inputs[0].dtype, int8.inputs[0].scale, int8.inputs[0].zero_point) == ("uint8", 1.0, 0)
    assert int8.outputs[0].dtype == "int8"
    assert int8.details.checks and all(check.passed for check in int8.details.checks.values())
    for entry in manifest.artifacts:
        assert entry.ops and entry.size == (artifacts / entry.file).stat().st_size
        if entry.runtime == "onnxruntime":
            assert not {"Loop", "Scan"} & set(entry.ops)
    assert sorted(p.name for p in artifacts.iterdir()) == sorted(
        [a.file for a in manifest.artifacts] + ["manifest.json", "probes"]
    ), "nothing but the artefacts, their stage probes and the manifest is left behind"
    probes = [entry.details.probe for entry in manifest.artifacts]
    assert all(probe is not None and probe.file is not None for probe in probes), probes
    assert sorted(p.name for p in (artifacts / "probes").iterdir()) == sorted(
        str(probe.file).removeprefix("probes/") for probe in probes if probe is not None
    )
    for probe in probes:
        assert probe is not None and probe.sha256 == sha256_file(artifacts / str(probe.file))


def test_int8_tflite_has_no_float_kernel(seed_run) -> None:
    _, artifacts, _ = seed_run
    assert float_kernels(artifacts / "cllnn_int8.tflite") == []
    assert float_kernels(artifacts / "cllnn_fp32.tflite") != []  # the check can fail


@pytest.mark.parametrize("length", [3, 9])
def test_longer_sequences_export_and_match(tmp_path: Path, test_split, length: int) -> None:
    model_path, artifacts, converted = _train_and_convert(
        tmp_path, f"[model]\nsequence_length = {length}\n[train]\nepochs = 3\n{LONG_SEQUENCE_GATE}"
    )
    assert converted.returncode == 0, converted.stdout[-3000:] + converted.stderr[-3000:]
    _assert_formats_match(model_path, artifacts, test_split.x)


def test_runtime_process_needs_a_fraction_of_the_memory(seed_run) -> None:
    """A device process (runtime + int8 TFLite) against one running the Keras model."""
    from benchmarks.memory import KERAS_PROCESS, RUNTIME_PROCESS, peak_of

    model_path, artifacts, _ = seed_run
    device = peak_of(RUNTIME_PROCESS, artifacts / "cllnn_int8.tflite", 100)
    keras_process = peak_of(KERAS_PROCESS, model_path, 100)
    assert not device["imported_tensorflow"] and keras_process["imported_tensorflow"]
    # measured 7.8% (benchmarks/RESULTS.md); 20% leaves room for another machine's allocator
    assert device["peak_rss_mib"] < 0.2 * keras_process["peak_rss_mib"]


def test_reproducible_formats_give_the_same_bytes_again(seed_run, tmp_path: Path) -> None:
    """Converting the same model again gives identical files where the manifest says so."""
    from export.formats import FORMATS

    model_path, artifacts, _ = seed_run
    first = {a.format: a.sha256 for a in load_manifest(artifacts).artifacts}
    claimed = [name for name, fmt in FORMATS.items() if fmt.reproducible]
    assert claimed, "at least the TFLite formats are reproducible"
    again = _run("convert", str(model_path), "--out", str(tmp_path / "again"),
                 "--formats", ",".join(claimed))
    assert again.returncode == 0, again.stderr[-2000:]
    second = {a.format: a.sha256 for a in load_manifest(tmp_path / "again").artifacts}
    assert {name: second[name] for name in claimed} == {name: first[name] for name in claimed}
    for entry in load_manifest(artifacts).artifacts:
        assert entry.details.reproducible == FORMATS[entry.format].reproducible


def test_parity_gate_of_the_workflow_passes(seed_run, tmp_path: Path) -> None:
    """The gate of .github/workflows/parity.yml, on the seed model trained as briefly: every
    format passes (tolerances: the defaults, with the quantized top-1 floor of BRIEF_TRAINING_GATE)."""
    from export.parity import ParityReport

    model_path, artifacts, _ = seed_run
    report_json, report_xml = tmp_path / "parity.json", tmp_path / "parity.xml"
    done = _run("parity", str(model_path), str(artifacts), "--data", "embedded", "--split", "test",
                *gate_flags(), "--json", str(report_json), "--junit", str(report_xml))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    report = ParityReport.load_json(report_json)
    assert report.images == 1000 and len(report.results) == 6 and bool(report)
    for result in report.results:
        assert [s.stage for s in result.stages] == ["cnn", "reservoir", "lstm", "output"]
        assert result.first_failing_stage is None, (result.format, result.stages)


def test_workflow_runs_the_commands_this_suite_checks() -> None:
    workflow = (Path(__file__).parents[2] / ".github" / "workflows" / "parity.yml").read_text()
    for command in ("cllnn-export train --data embedded --epochs 3",
                    "cllnn-export convert runs/ci/model.keras --out runs/ci/artifacts",
                    "cllnn-export parity runs/ci/model.keras runs/ci/artifacts"):
        assert command in workflow
    assert " ".join(gate_flags()) in " ".join(workflow.split())  # the gate this suite checks
    assert "--junit" in workflow and "upload-artifact" in workflow

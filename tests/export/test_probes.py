"""Stage probes: every artefact comes with the same graph exporting one output per stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import runtime
from cllnn_edge.config import Config, ModelConfig
from cllnn_edge.model import build_model, load_trained
from cllnn_edge.preprocessing import fit_standardizer
from export.pipeline.convert import ConvertJob, ConvertReport, convert
from export.graph.reference import trained_reference
from export.graph.stages import PROBE_OUTPUTS
from runtime.artifacts.manifest import MANIFEST_NAME, ProbeRecord, load_manifest, sha256_file
from runtime.loader import runtime_needs

pytestmark = pytest.mark.slow  # converts three formats with their probes

SMALL = dict(conv_filters=(4, 8, 16), reservoir_dim=48, lstm_units=12)
FORMATS = ("tflite-fp32", "tflite-int8", "onnx-fp32")
FLOAT_ATOL = 1e-4
INT8_MAX_NRMSE = 0.5  # measured 0.01 (output) to 0.21 (lstm) on x86 AVX-512 VNNI, 2026-11-29


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    from cllnn_edge.data import load_splits

    return load_splits("embedded").test.x[:200]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, images: np.ndarray) -> tuple[Path, ConvertReport]:
    root = tmp_path_factory.mktemp("probes")
    model = build_model(ModelConfig(**SMALL), fit_standardizer(images))
    model.save(root / "model.keras")
    cfg = Config().replace("export", formats=FORMATS)
    report = convert(ConvertJob.from_config(root / "model.keras", root / "artifacts", cfg, data="embedded"))
    return root, report


@pytest.fixture(scope="module")
def reference(converted: tuple[Path, ConvertReport], images: np.ndarray) -> dict[str, np.ndarray]:
    root, _ = converted
    return trained_reference(load_trained(root / "model.keras")).predict_outputs(images)


def _probe(report: ConvertReport, name: str) -> ProbeRecord:
    (entry,) = [e for e in report.manifest.artifacts if e.format == name]
    assert entry.details.probe is not None
    return entry.details.probe


def test_every_artefact_has_a_probe_file_recorded_in_the_manifest(
    converted: tuple[Path, ConvertReport],
) -> None:
    root, report = converted
    out = root / "artifacts"
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert [a["format"] for a in manifest["artifacts"]] == list(FORMATS)
    for artefact in manifest["artifacts"]:
        probe = artefact["details"]["probe"]
        assert "error" not in probe, probe
        assert probe["file"] == f"probes/{artefact['file']}"
        assert probe["sha256"] == sha256_file(out / probe["file"])
        assert probe["size"] == (out / probe["file"]).stat().st_size
        assert probe["stages"] == list(PROBE_OUTPUTS)
    assert sorted(p.name for p in (out / "probes").iterdir()) == sorted(
        a["file"] for a in manifest["artifacts"]
    )
    assert not [p for p in out.iterdir() if p.name.startswith(".work-")]


@pytest.mark.parametrize("name", FORMATS)
def test_probe_stages_match_the_trained_model(
    converted: tuple[Path, ConvertReport], reference: dict[str, np.ndarray], images: np.ndarray, name: str
) -> None:
    root, report = converted
    with runtime.load(root / "artifacts" / str(_probe(report, name).file)) as probe:
        stages = probe.predict_outputs(images)
    assert sorted(stages) == sorted(PROBE_OUTPUTS)  # matched by name, whatever order the file keeps
    for stage, want in reference.items():
        got = stages[stage]
        assert got.shape == want.shape, (stage, got.shape, want.shape)
        if name.endswith("int8"):
            # RMSE relative to the reference's RMS (an untrained model's near-uniform
            # probabilities have almost no spread, so std would over-weigh rounding)
            nrmse = float(np.sqrt(np.mean((got - want) ** 2) / (np.mean(want**2) + 1e-12)))
            assert nrmse < INT8_MAX_NRMSE, (stage, nrmse)
        else:
            np.testing.assert_allclose(got, want, atol=FLOAT_ATOL, err_msg=stage)


@pytest.mark.parametrize("name", FORMATS)
def test_probe_is_the_artefacts_own_graph(
    converted: tuple[Path, ConvertReport], images: np.ndarray, name: str
) -> None:
    """The probe's last output is what the artefact itself predicts."""
    root, report = converted
    out = root / "artifacts"
    (entry,) = [e for e in report.manifest.artifacts if e.format == name]
    with runtime.load(out / entry.file) as artefact:
        probs = artefact.predict(images)
    with runtime.load(out / str(_probe(report, name).file)) as probe:
        last = probe.predict_outputs(images)["output"]
        assert probe.input_spec == artefact.input_spec
    if name.endswith("int8"):  # predict renormalises an int8 softmax; predict_outputs does not
        last = last / last.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(last, probs, atol=1e-6)


def test_a_failed_probe_conversion_does_not_fail_the_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker reports a probe failure; the artefact stands and the manifest says why."""
    from export.formats import isolate

    real = isolate.run_isolated

    def broken_probe(job: isolate.Job, **kwargs: object) -> isolate.JobResult:
        if job.probe_source is not None:
            job = isolate.Job(**{**job.__dict__, "probe_source": str(tmp_path / "missing")})
        return real(job, **kwargs)

    monkeypatch.setattr("export.pipeline.convert.run_isolated", broken_probe)
    images = np.zeros((4, 28, 28), np.uint8)
    model = build_model(ModelConfig(**SMALL), fit_standardizer(images + 1))
    model.save(tmp_path / "model.keras")
    cfg = Config().replace("export", formats=("tflite-fp32",))
    report = convert(ConvertJob.from_config(tmp_path / "model.keras", tmp_path / "out", cfg, data="embedded"))
    (entry,) = report.manifest.artifacts
    assert report.results[0].error is None
    assert entry.details.probe is not None and "tflite-fp32 probe:" in str(entry.details.probe.error)
    assert (tmp_path / "out" / entry.file).exists()
    assert not (tmp_path / "out" / "probes" / entry.file).exists()


def test_each_record_says_what_it_needs_of_its_runtime(converted: tuple[Path, ConvertReport]) -> None:
    """Convert fills each record's ``needs`` from the written file: its op versions (TFLite) or opsets
    (ONNX), and the oldest runtime releases that load it (runtime.artifacts.compat), in manifest.json."""
    root, report = converted
    out = root / "artifacts"
    written = {entry.file: entry for entry in load_manifest(out).artifacts}
    for entry in report.manifest.artifacts:
        needs = written[entry.file].needs
        assert needs is not None and needs == entry.needs
        assert needs == runtime_needs((out / entry.file).read_bytes(), entry.file)
        if entry.runtime == "litert":
            assert {"FULLY_CONNECTED", "CONV_2D"} <= set(needs.op_versions) and needs.op_types
            assert needs.oldest["ai-edge-litert"] is not None and "ai-edge-litert" in needs.reasons
        else:
            assert needs.opsets["ai.onnx"] >= 13 and needs.ir_version is not None
            assert needs.oldest["onnxruntime"] is not None

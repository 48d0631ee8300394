"""The report: its opening line (the choice on this machine, or why there is none, from selection.json),
and where most of each quantized file's error enters (from parity.json's stage results)."""

from __future__ import annotations

from typing import Any

import numpy as np

from export.report.build import deploy_line, format_rows, html_page, markdown
from runtime.deploy.choose import Budget, Candidate, Selection
from runtime.checks.compare import compare
from runtime.artifacts.manifest import ArtifactEntry, Manifest, TensorSpec
from runtime.checks.parity import ArtifactParity, ParityReport
from runtime.checks.tolerances import Tolerance

MACHINE = {"cpu": "Test CPU", "cpu_arch": "x86-64", "cpu_isa": ["fma", "avx2"], "cpu_class": "x86-64 AVX2 (no VNNI)"}


def _selection(*candidates: Candidate, verdict: str) -> Selection:
    return Selection(artifacts_dir="artifacts", machine=MACHINE, versions={}, settings={}, budget=Budget(),
                     tolerances={}, check_set={"images": 300}, reference_accuracy=0.973,
                     candidates=candidates, verdict=verdict)


def _candidate(file: str, chosen: bool, accuracy: float, drop: float) -> Candidate:
    return Candidate(format="tflite-dynamic", file=file, precision="dynamic-int8", size=1024, verified=True,
                     agreement_pct=100.0, accuracy=accuracy, accuracy_drop_pp=drop, max_abs=1e-3,
                     p50_us=69.4, p99_us=80.0, chosen=chosen)


def test_the_report_opens_with_the_choice_its_figures_and_why() -> None:
    verdict = "the fastest by p50 of the 6 verified files within budget"
    selection = _selection(_candidate("cllnn_dynamic.tflite", True, 0.973, 0.0), verdict=verdict)
    assert deploy_line(selection) == (
        "Deploy on this machine (x86-64 AVX2 (no VNNI)): cllnn_dynamic.tflite — p50 69 us, accuracy 97.3% "
        "(0.0 points below the trained model on 300 check images), the fastest by p50 of the 6 verified "
        "files within budget")
    above = _selection(_candidate("a.tflite", True, 0.976, -0.3333), verdict=verdict)
    assert "(0.3 points above the trained model" in deploy_line(above)


def test_the_report_says_why_nothing_was_chosen() -> None:
    verdict = "no file passed verification on this machine (1 listed): a.tflite: max_abs 0.5 > 1e-05"
    selection = _selection(_candidate("a.tflite", False, 0.5, 47.0), verdict=verdict)
    assert not selection
    assert deploy_line(selection) == f"No file to deploy on this machine (x86-64 AVX2 (no VNNI)): {verdict}"


def _parity(noise_at: str) -> ParityReport:
    """A float32 file with rounding noise and an int8 file whose error enters at ``noise_at``, compared for real."""
    rng = np.random.default_rng(0)
    reference = {stage: rng.normal(size=(16, 8)).astype(np.float32) for stage in ("cnn", "reservoir", "lstm")}
    logits = rng.normal(size=(16, 10))
    reference["output"] = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    results = []
    for fmt, precision, scale in (("tflite-fp32", "float32", 1e-7), ("tflite-int8", "int8", 0.05)):
        carried, stages = 0.0, {}
        for stage, ref in reference.items():  # noise of NRMSE ``scale`` enters at noise_at, carried on
            carried += scale if stage == noise_at else 0.0
            unit = rng.standard_normal(ref.shape)
            stages[stage] = ref + carried * float(ref.std()) * unit / np.sqrt(np.mean(unit**2))
        comparison = compare(reference, stages["output"], Tolerance(max_abs=1.0, stage_nrmse=1.0),
                             labels=np.arange(16) % 10, stages=stages)
        results.append(ArtifactParity(**vars(comparison), format=fmt, file=f"{fmt}.tflite", precision=precision))
    return ParityReport(model="model.keras", artifacts_dir="artifacts", data="embedded", split="test", images=16,
                        tolerances={}, reference_accuracy=0.9, results=tuple(results))


def _manifest_of(parity: ParityReport) -> Manifest:
    spec = (TensorSpec("pixels", (-1, 28, 28), "uint8"),)
    return Manifest(tuple(ArtifactEntry(file=r.file, format=r.format, runtime="litert", precision=r.precision,
                                        sha256="0" * 64, size=2048, inputs=spec, outputs=spec)
                          for r in parity.results))


def _report(parity: ParityReport) -> dict[str, Any]:
    """The dict ``write_report`` assembles, with the stages' files replaced by small literals."""
    manifest = _manifest_of(parity)
    bench = {"machine": MACHINE, "results": [
        {"export_format": r.format, "batch": batch, "p50_us": 90.0, "p99_us": 99.0, "throughput_ips": 1e4}
        for r in parity.results for batch in (1, 64)]}
    selection = _selection(_candidate("tflite-int8.tflite", True, 0.9, 0.0), verdict="the fastest")
    report = {
        "deploy": deploy_line(selection), "stages": {"parity": {"ran": True, "seconds": 1.0, "key": "k"}},
        "data": {"source": "embedded", "train": 8, "val": 4, "test": 16, "fingerprint": "f" * 64},
        "training": {"final": {"test_accuracy": 0.9, "val_accuracy": 0.9}, "epochs": {"loss": [1.0]},
                     "timing": {"train_seconds": 1.0, "median_step_ms": 2.0}, "trainable_params": 10,
                     "config": {}},
        "manifest": {**manifest.to_dict(), "data": {}}, "parity": parity.to_dict(), "bench": bench,
        "selection": {**selection.to_dict(), "settings": {"batch": 1, "threads": 1, "runs": 10}},
        "plots": {name: f"plots/{name}.png" for name in ("training", "confusion_trained", "latency", "tradeoff")},
    }
    report["formats"] = format_rows(parity, manifest, bench)
    return report


def test_quantized_files_name_the_stage_where_most_error_enters() -> None:
    report = _report(_parity("reservoir"))
    phrase = "reservoir (100% of the rise in normalised RMSE)"
    rows = {row.split(" | ")[0]: row for row in markdown(report).splitlines() if row.startswith("| tflite-")}
    assert "most error enters at |" in markdown(report)
    assert rows["| tflite-int8"].endswith(f"| {phrase} |")
    assert rows["| tflite-fp32"].endswith("| - |")  # float32: rounding noise, no stage to keep
    page = html_page(report)
    assert f"<td>{phrase}</td>" in page
    assert page.count("Most error enters at:") == 1  # above the int8 file's stage table only
    sentence = page.index(f"Most error enters at: <b>{phrase}</b>")
    assert page.index("<h3>tflite-int8") < sentence < page.index("<table", page.index("<h3>tflite-int8"))


def test_the_report_reads_the_attribution_the_comparison_made() -> None:
    parity = _parity("lstm")
    (row,) = [row for row in format_rows(parity, _manifest_of(parity), {"results": []})
              if row["format"] == "tflite-int8"]
    assert row["error_entry"] == parity.results[1].main_error_stage.describe()
    assert row["error_entry"].startswith("lstm (")

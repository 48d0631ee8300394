"""The report's opening line: the choice on this machine, or why there is none (from selection.json)."""

from __future__ import annotations

from export.report import deploy_line
from runtime.choose import Budget, Candidate, Selection

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

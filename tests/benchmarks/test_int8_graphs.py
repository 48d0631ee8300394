"""The int8-graph comparison: its verdict on the default graph, and its Markdown from the stored figures."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.int8_graphs import main, verdicts

STORED = Path(__file__).resolve().parents[2] / "benchmarks" / "int8_graphs.json"


def _results(default_us: float, rival_us: float, rival_t3: int) -> dict:
    row = {"p50_us": default_us, "vs_float32": default_us / 300, "t1": 0, "t3": 9}
    rival = {"p50_us": rival_us, "vs_float32": rival_us / 300, "t1": 0, "t3": rival_t3}
    slow = {"p50_us": 400.0, "vs_float32": 1.3, "t1": 9, "t3": 40}
    return {"variants": {"float-front": {"tflite-int8": row, "onnx-int8": row},
                         "bounded": {"tflite-int8": rival, "onnx-int8": rival},
                         "plain": {"tflite-int8": slow, "onnx-int8": slow}}}


def test_a_faster_graph_at_equal_fidelity_fails_the_default() -> None:
    verdict = verdicts(_results(100.0, 90.0, rival_t3=9))["tflite-int8"]
    assert verdict.startswith("NOT met") and "bounded (+11%)" in verdict


def test_a_faster_graph_with_worse_fidelity_does_not_count() -> None:
    verdict = verdicts(_results(100.0, 50.0, rival_t3=10))["tflite-int8"]
    assert verdict.startswith("met") and "the default itself" in verdict


def test_within_five_percent_is_met() -> None:
    assert verdicts(_results(104.0, 100.0, rival_t3=9))["onnx-int8"].startswith("met")


def test_render_writes_the_stored_figures(tmp_path: Path) -> None:
    out = tmp_path / "INT8_GRAPH.md"
    assert main(["--json", str(STORED), "--md", str(out), "--render"]) == 0
    text = out.read_text()
    stored = json.loads(STORED.read_text())
    assert stored["machine"] in text
    assert text.count("| float-front (default) |") == 2

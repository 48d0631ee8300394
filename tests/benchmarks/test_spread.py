"""benchmarks.spread: the spread over seeds leaves the repeat out, and renders every case."""

from __future__ import annotations

from benchmarks.spread import CASES, markdown, spread


def _run(seed: int, val: int, int8: int) -> dict:
    formats = {"tflite-fp32": {"top1_disagreements": 0, "accuracy_change": 0, "max_abs": 1e-6},
               "tflite-int8": {"top1_disagreements": int8, "accuracy_change": -1, "max_abs": 0.3}}
    return {"seed": seed, "val_correct": val, "val_images": 400, "test_correct": 950,
            "test_images": 1000, "formats": formats}


def test_spread_counts_each_seed_once_and_renders() -> None:
    runs = [_run(0, 380, 2), _run(1, 377, 9), _run(0, 380, 2)]  # seed 0 again: the repeat
    summary = spread(runs)
    assert summary["val_correct"] == {"min": 377, "median": 378.5, "max": 380}
    assert summary["formats"]["tflite-int8"]["top1_disagreements"]["max"] == 9
    case = {"case": CASES["t1"].__dict__, "runs": runs, "spread": summary, "repeat_identical": True}
    text = markdown({"seeds": [0, 1], "machine": "test CPU", "cases": {"t1": case}})
    assert "| min-max | 377-380 | 950-950 | 2-9 |" in text
    assert "tflite-fp32 disagreements" not in text  # a column of zeros says nothing

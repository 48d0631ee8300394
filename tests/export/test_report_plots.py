"""The report's trade-off plot: fidelity against latency, its labels readable (none over another, all inside)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from export.report import plots  # noqa: E402

# The shape of a real `cllnn-export run --data embedded` run: many formats, p50s within a few microseconds.
ROWS = [
    {"format": fmt, "size_kib": size, "p50_us": p50, "max_abs": err}
    for fmt, size, p50, err in (
        ("tflite-fp32", 180.0, 52.0, 2e-7), ("tflite-fp16", 92.0, 53.0, 3e-4),
        ("tflite-dynamic", 50.0, 51.0, 4e-3), ("tflite-int8", 48.0, 55.0, 2e-2),
        ("tflite-int16x8", 60.0, 54.0, 5e-3), ("onnx-fp32", 181.0, 56.0, 1e-7),
        ("onnx-int8", 49.0, 57.0, 3e-2), ("tflite-aeq", 47.0, 52.5, 1.5e-2),
        ("onnx-fp16", 93.0, 53.5, 0.0),
    )
]


def test_tradeoff_labels_do_not_overlap_and_stay_inside_the_figure(tmp_path: Path) -> None:
    figure = plots.tradeoff_figure(ROWS)
    renderer = figure.canvas.get_renderer()
    axis = figure.axes[0]
    boxes = [text.get_window_extent(renderer) for text in axis.texts]
    assert len(boxes) == len(ROWS)
    for first, second in itertools.combinations(boxes, 2):
        assert not first.overlaps(second), (first, second)
    frame = figure.bbox
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, box
    assert axis.get_yscale() == "log" and "max abs error" in axis.get_ylabel()
    name = plots.save_png(figure, tmp_path / "tradeoff.png")
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

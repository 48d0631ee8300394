"""The report's trade-off plot: fidelity against latency, its labels readable (none over another or over a
marker, all inside the axes), for made-up close timings and for the eight formats of a real run."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from matplotlib.text import Text  # noqa: E402

from export.layout import RunLayout  # noqa: E402
from export.report import plots  # noqa: E402
from export.report.build import write_report  # noqa: E402

FIXTURE = Path(__file__).parents[1] / "fixtures" / "run_a8fda90"
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


def old_run_report(tmp_path: Path) -> tuple[Path, dict]:
    """The report rebuilt from the a8fda90 run's files (eight formats; its bench.json and parity.json), in
    ``tmp_path/run`` (the fixture's files linked there, so only the report's own files are written)."""
    stages = {path.stem: {"key": json.loads(path.read_text())["key"], "ran": False, "seconds": 0.0}
              for path in (FIXTURE / ".stages").glob("*.json")}
    data = {"source": "embedded", "train": 3600, "val": 400, "test": 1000, "image_shape": [28, 28, 1],
            "classes": 10, "fingerprint": "f42bb758316a"}
    run = tmp_path / "run"
    (run / "train").mkdir(parents=True)
    for name in ("artifacts", "train/history.json", "train/preprocessing.json", "bench.json", "parity.json",
                 "selection.json", "config.toml"):
        (run / name).symlink_to(FIXTURE / name)
    return run, write_report(RunLayout(run), stages, data)


def _check_labels(figure, rows: list[dict]) -> None:
    """No two label boxes overlap, none covers a marker, all lie inside the axes (the renderer's extents)."""
    renderer = figure.canvas.get_renderer()
    axis = figure.axes[0]
    boxes = [Text.get_window_extent(text, renderer) for text in axis.texts]
    assert len(boxes) == len(rows)
    for first, second in itertools.combinations(boxes, 2):
        assert not first.overlaps(second), (first, second)
    ordered = sorted(rows, key=lambda r: r["p50_us"])
    largest = max(row["size_kib"] for row in rows)
    points = [(row["p50_us"], max(row["max_abs"], plots.FLOOR)) for row in ordered]
    markers = plots.marker_boxes(axis, points, [40 + 900 * row["size_kib"] / largest for row in ordered])
    for box, marker in itertools.product(boxes, markers):
        assert not box.overlaps(marker), (box, marker)
    frame = axis.get_window_extent(renderer)
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, box


def test_tradeoff_labels_do_not_overlap_and_stay_inside_the_axes(tmp_path: Path) -> None:
    figure = plots.tradeoff_figure(ROWS)
    _check_labels(figure, ROWS)
    axis = figure.axes[0]
    assert axis.get_yscale() == "log" and "max abs error" in axis.get_ylabel()
    name = plots.save_png(figure, tmp_path / "tradeoff.png")
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plot_of_a_real_runs_eight_formats_has_clear_labels_and_readable_ticks(tmp_path: Path) -> None:
    rows = old_run_report(tmp_path)[1]["formats"]
    assert len(rows) == 8 and len({row["p50_us"] for row in rows}) == 8
    figure = plots.tradeoff_figure(rows)
    _check_labels(figure, rows)
    figure.canvas.draw()
    axis = figure.axes[0]
    ticks = [label for label in axis.get_xticklabels(minor=True) + axis.get_xticklabels() if label.get_text()
             and axis.get_xlim()[0] <= label.get_position()[0] <= axis.get_xlim()[1]]
    renderer = figure.canvas.get_renderer()
    tick_boxes = sorted((label.get_window_extent(renderer) for label in ticks), key=lambda box: box.x0)
    assert len(tick_boxes) >= 4
    for left, right in itertools.pairwise(tick_boxes):
        assert left.x1 < right.x0, [label.get_text() for label in ticks]  # 60, 70, 80, 90 used to collide

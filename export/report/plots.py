"""The report's figures, as PNG files (matplotlib, headless: the Agg backend, no display).

Each function draws one figure from the report's own data (no recomputation)
and writes it atomically; it returns the file name, relative to the plot
directory, so the HTML can point at it.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: never look for a display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
import numpy as np  # noqa: E402

from runtime.atomic import write_bytes_atomic  # noqa: E402
from runtime.checks.metrics import disagreement  # noqa: E402

DPI = 110
FLOOR = 1e-9  # the tradeoff plot's lowest error: log axes have no zero


def save_png(figure: plt.Figure, path: Path, dpi: int = DPI) -> str:
    """Render ``figure`` to PNG bytes, close it, write the file atomically; returns its name."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())
    return path.name


def training_curves(epochs: dict[str, Sequence[float]], path: Path) -> str:
    """Loss and accuracy per epoch, training and validation side by side."""
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(9, 3.4))
    x = np.arange(1, len(epochs["loss"]) + 1)
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.plot(x, epochs[metric], marker="o", label="train")
        if f"val_{metric}" in epochs:
            axis.plot(x, epochs[f"val_{metric}"], marker="s", label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.set_xticks(x)
        axis.grid(alpha=0.3)
        axis.legend()
    loss_axis.set_title("loss")
    accuracy_axis.set_title("accuracy")
    return save_png(figure, path)


def confusion(matrix: Sequence[Sequence[int]], title: str, path: Path) -> str:
    """Counts per (true label, predicted class), each cell annotated."""
    counts = np.asarray(matrix)
    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    axis.imshow(counts, cmap="Blues")
    classes = np.arange(counts.shape[0])
    axis.set_xticks(classes)
    axis.set_yticks(classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true label")
    accuracy = np.trace(counts) / max(1, counts.sum())
    axis.set_title(f"{title}\naccuracy {100 * accuracy:.1f}% of {counts.sum()} images")
    threshold = counts.max() / 2
    for (row, col), value in np.ndenumerate(counts):
        if value:
            axis.text(col, row, str(value), ha="center", va="center", fontsize=7,
                      color="white" if value > threshold else "black")
    return save_png(figure, path)


def latency_distribution(samples: dict[str, Sequence[float]], path: Path) -> str:
    """Per format, every timed batch-1 call: box (quartiles, whiskers to p1 / p99) on a log axis."""
    names = list(samples)
    figure, axis = plt.subplots(figsize=(8, 0.55 * len(names) + 1.4))
    axis.boxplot([samples[name] for name in names], orientation="horizontal", whis=(1, 99),
                 showfliers=False, tick_labels=names)
    for row, name in enumerate(names, start=1):
        values = np.asarray(samples[name])
        axis.scatter(values, np.full(len(values), row) + np.linspace(-0.2, 0.2, len(values)),
                     s=3, alpha=0.35, color="tab:blue")
    axis.set_xscale("log")
    axis.set_xlabel("latency per call, batch 1, one thread (microseconds, log scale)")
    axis.grid(axis="x", alpha=0.3, which="both")
    axis.set_title("latency distribution through runtime")
    return save_png(figure, path)


def tradeoff(rows: Sequence[dict[str, Any]], path: Path) -> str:
    """The fidelity-against-latency figure (``tradeoff_figure``) written as PNG."""
    return save_png(tradeoff_figure(rows), path)


def tradeoff_figure(rows: Sequence[dict[str, Any]]) -> plt.Figure:
    """Fidelity to the trained model against p50 latency; each marker's area is proportional to the file size.

    The y axis is the max abs error of the output probabilities against the trained model on a log
    axis: accuracy puts every format at the same height, the error separates float32 (rounding,
    ~1e-7), float16 and the integer formats by orders of magnitude. Each label has its marker's
    colour and is placed by ``place_labels`` clear of the other labels and markers."""
    figure, axis = plt.subplots(figsize=(8.5, 5))
    largest = max((row["size_kib"] for row in rows), default=1.0) or 1.0
    ordered = sorted(rows, key=lambda r: r["p50_us"])
    points = [(row["p50_us"], max(row["max_abs"], FLOOR)) for row in ordered]  # log axes have no zero
    areas = [40 + 900 * row["size_kib"] / largest for row in ordered]
    colours = [f"C{index % 10}" for index in range(len(ordered))]
    for (x, y), area, colour in zip(points, areas, colours):
        axis.scatter(x, y, s=area, alpha=0.55, color=colour)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("p50 latency, batch 1, one thread (microseconds, log scale; from bench)")
    axis.set_ylabel("max abs error vs trained model (log scale)")
    axis.grid(alpha=0.3, which="both")
    axis.set_title("fidelity vs latency (marker area: file size)")
    axis.margins(x=0.3, y=0.15)
    plain_ticks(axis, [x for x, _ in points])
    place_labels(axis, points, areas, [f"{row['format']} {row['size_kib']:.0f} KiB" for row in ordered], colours)
    return figure


def plain_ticks(axis: plt.Axes, xs: Sequence[float]) -> None:
    """Label a log x axis 20, 50, 100 rather than 2x10^1; over a wide range, minor ticks at 2 and 5 only."""
    wide = max(xs, default=1.0) > 5 * min(xs, default=1.0)  # many minor ticks: their labels would collide
    axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_plain))
    axis.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(_plain_2_5 if wide else _plain))


def _plain(value: float, _: Any = None) -> str:
    """52, not 5.2x10^1."""
    return f"{value:g}"


def _plain_2_5(value: float, _: Any = None) -> str:
    """A minor tick's label only at 2 and 5 of each decade, so the labels of 60, 70, 80, 90 do not collide."""
    leading = round(value / 10 ** math.floor(math.log10(value))) if value > 0 else 0
    return _plain(value) if leading in (2, 5) else ""


GAP = 3.0  # points between a marker's edge and its label
RINGS = 8  # distances tried, each STEP points further out
STEP = 9.0
# Directions tried at each distance, with the text alignment that keeps the label on that side.
_SIDES = ((1, 0, "left", "center"), (-1, 0, "right", "center"), (0, 1, "center", "bottom"),
          (0, -1, "center", "top"), (1, 1, "left", "bottom"), (1, -1, "left", "top"),
          (-1, 1, "right", "bottom"), (-1, -1, "right", "top"))


def _overlap(first: Bbox, second: Bbox) -> float:
    """The area two boxes share (0 when they only touch or are apart)."""
    width = min(first.x1, second.x1) - max(first.x0, second.x0)
    height = min(first.y1, second.y1) - max(first.y0, second.y0)
    return max(width, 0.0) * max(height, 0.0)


def marker_boxes(axis: plt.Axes, points: Sequence[tuple[float, float]], areas: Sequence[float]) -> list[Bbox]:
    """Each marker's bounding square in display pixels (``areas`` in points squared, as scatter's ``s``)."""
    scale = axis.figure.dpi / 72
    boxes = []
    for (x, y), area in zip(points, areas):
        centre_x, centre_y = axis.transData.transform((x, y))
        radius = math.sqrt(area / math.pi) * scale
        boxes.append(Bbox.from_extents(centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius))
    return boxes


def place_labels(axis: plt.Axes, points: Sequence[tuple[float, float]], areas: Sequence[float],
                 labels: Sequence[str], colours: Sequence[str]) -> list[Any]:
    """Write each label beside its marker, on the first side and distance (nearest first) where its box,
    as the renderer draws it, stays inside the axes and overlaps no label placed before it and no marker;
    when no place is free, the one with the least overlap. Returns the labels, in the order of ``points``."""
    axis.set_xlim(axis.get_xlim())  # fix the limits (margins included) before measuring anything
    axis.set_ylim(axis.get_ylim())
    renderer = axis.figure.canvas.get_renderer()
    frame, markers = axis.get_window_extent(renderer), marker_boxes(axis, points, areas)
    placed: list[Bbox] = []
    notes = []
    for point, area, label, colour in zip(points, areas, labels, colours):
        best: tuple[float, Any, Bbox] | None = None
        for ring, (dx, dy, ha, va) in itertools.product(range(RINGS), _SIDES):
            reach = math.sqrt(area / math.pi) + GAP + ring * STEP
            note = axis.annotate(label, point, textcoords="offset points", xytext=(dx * reach, dy * reach),
                                 ha=ha, va=va, fontsize=7, color=colour)
            box = note.get_window_extent(renderer)
            cost = (box.width * box.height - _overlap(box, frame)
                    + sum(_overlap(box, other) for other in (*placed, *markers)))
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, note, box)
            else:
                note.remove()
            if cost == 0:
                break
        assert best is not None  # _SIDES is not empty
        placed.append(best[2])
        notes.append(best[1])
    return notes


def pareto_plot(rows: Sequence[dict[str, Any]], machine: str, path: Path) -> str:
    """A precision sweep (``export.pipeline.sweep``): top-1 disagreement with the trained model (%) against p50
    latency (the accuracy drop is in each label), marker area
    proportional to file size; the Pareto front (``on_pareto_front``) outlined and joined in p50
    order, so the variants worth choosing between stand out from those another beats."""
    figure, axis = plt.subplots(figsize=(8.5, 5))
    largest = max((row["size_kib"] for row in rows), default=1.0) or 1.0
    ordered = sorted(rows, key=lambda r: r["p50_us"])
    points = [(row["p50_us"], 100 * disagreement(row["top1_agreement"])) for row in ordered]
    areas = [40 + 900 * row["size_kib"] / largest for row in ordered]
    for row, (x, y), area in zip(ordered, points, areas):
        front = row["on_pareto_front"]
        axis.scatter(x, y, s=area, alpha=0.6 if front else 0.3, color="tab:red" if front else "tab:gray",
                     edgecolors="black" if front else "none", linewidths=1.2)
    labels = [f"{row['name']}\n{row['size_kib']:.0f} KiB, {row['accuracy_drop_pt']:+.2f} pt"
              + ("" if row["parity_passed"] else " (parity FAILED)") for row in ordered]
    front = [(x, y) for row, (x, y) in zip(ordered, points) if row["on_pareto_front"]]
    if front:
        axis.plot(*zip(*front), color="tab:red", linewidth=1, linestyle="--",
                  label="Pareto front (disagreement, p50, size)")
        axis.legend(loc="upper right", fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("p50 latency, batch 1, one thread (microseconds, log scale)")
    axis.set_ylabel("top-1 disagreement with the trained model (%)")
    axis.axhline(0.0, color="black", linewidth=0.5)
    axis.grid(alpha=0.3, which="both")
    axis.set_title(f"precision sweep (marker area: file size)\n{machine}", fontsize=9)
    axis.margins(x=0.25, y=0.3)
    plain_ticks(axis, [x for x, _ in points])
    place_labels(axis, points, areas, labels, ["black" if row["on_pareto_front"] else "0.35" for row in ordered])
    return save_png(figure, path)

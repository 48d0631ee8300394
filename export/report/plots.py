"""The report's figures, as PNG files (matplotlib, headless: the Agg backend, no display).

Each function draws one figure from the report's own data (no recomputation)
and writes it atomically; it returns the file name, relative to the plot
directory, so the HTML can point at it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: never look for a display

import matplotlib.pyplot as plt  # noqa: E402
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
    ~1e-7), float16 and the integer formats by orders of magnitude. Labels are placed by
    ``place_labels`` so formats of close latency do not write over each other."""
    figure, axis = plt.subplots(figsize=(8.5, 5))
    largest = max((row["size_kib"] for row in rows), default=1.0) or 1.0
    ordered = sorted(rows, key=lambda r: r["p50_us"])
    points = [(row["p50_us"], max(row["max_abs"], FLOOR)) for row in ordered]  # log axes have no zero
    for row, (x, y) in zip(ordered, points):
        axis.scatter(x, y, s=40 + 900 * row["size_kib"] / largest, alpha=0.55)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("p50 latency, batch 1, one thread (microseconds, log scale; from bench)")
    axis.set_ylabel("max abs error vs trained model (log scale)")
    axis.grid(alpha=0.3, which="both")
    axis.set_title("fidelity vs latency (marker area: file size)")
    axis.margins(x=0.3, y=0.15)
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")  # 52, not 5.2x10^1
    axis.xaxis.set_major_formatter(plain)
    axis.xaxis.set_minor_formatter(plain)
    place_labels(axis, points, [f"{row['format']} {row['size_kib']:.0f} KiB" for row in ordered])
    return figure


# Offsets (points) tried in turn for each label: near the marker first, then further out above and below.
_OFFSETS = [(dx, dy) for dy in (8, -16, 20, -28, 32, -40, 44, -52, 56, -64) for dx in (10, -90, 40, -130)]


def place_labels(axis: plt.Axes, points: Sequence[tuple[float, float]], labels: Sequence[str]) -> list[Any]:
    """Annotate each point with the first offset whose text box overlaps no label placed before it and
    stays inside the figure (the renderer's own extents, so what is checked is what is drawn); the
    last offset tried is kept if none is free. Returns the annotations, in the order of ``points``."""
    figure = axis.figure
    renderer = figure.canvas.get_renderer()
    inside, placed, notes = figure.bbox, [], []
    for (x, y), label in zip(points, labels):
        for dx, dy in _OFFSETS:
            note = axis.annotate(label, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7,
                                 arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5})
            box = note.get_window_extent(renderer)
            fits = (box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0 and box.y1 <= inside.y1)
            if fits and not any(box.overlaps(other) for other in placed):
                break
            if (dx, dy) != _OFFSETS[-1]:
                note.remove()
        placed.append(box)
        notes.append(note)
    return notes


def pareto_plot(rows: Sequence[dict[str, Any]], machine: str, path: Path) -> str:
    """A precision sweep (``export.pipeline.sweep``): top-1 disagreement with the trained model (%) against p50
    latency (the accuracy drop is in each label), marker area
    proportional to file size; the Pareto front (``on_pareto_front``) outlined and joined in p50
    order, so the variants worth choosing between stand out from those another beats."""
    figure, axis = plt.subplots(figsize=(8.5, 5))
    largest = max((row["size_kib"] for row in rows), default=1.0) or 1.0
    for rank, row in enumerate(sorted(rows, key=lambda r: r["p50_us"])):  # labels staggered: many share y = 0
        front = row["on_pareto_front"]
        y = 100 * disagreement(row["top1_agreement"])
        axis.scatter(row["p50_us"], y, s=40 + 900 * row["size_kib"] / largest,
                     alpha=0.6 if front else 0.3, color="tab:red" if front else "tab:gray",
                     edgecolors="black" if front else "none", linewidths=1.2)
        label = (f"{row['name']}\n{row['size_kib']:.0f} KiB, {row['accuracy_drop_pt']:+.2f} pt"
                 + ("" if row["parity_passed"] else " (parity FAILED)"))
        axis.annotate(label, (row["p50_us"], y), textcoords="offset points", xytext=(6, 8 + 20 * (rank % 5)),
                      fontsize=7, arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5})
    front = sorted((r for r in rows if r["on_pareto_front"]), key=lambda r: r["p50_us"])
    if front:
        axis.plot([r["p50_us"] for r in front], [100 * disagreement(r["top1_agreement"]) for r in front], color="tab:red",
                  linewidth=1, linestyle="--", label="Pareto front (disagreement, p50, size)")
        axis.legend(loc="upper right", fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("p50 latency, batch 1, one thread (microseconds, log scale)")
    axis.set_ylabel("top-1 disagreement with the trained model (%)")
    axis.axhline(0.0, color="black", linewidth=0.5)
    axis.grid(alpha=0.3, which="both")
    axis.set_title(f"precision sweep (marker area: file size)\n{machine}", fontsize=9)
    axis.margins(x=0.25, y=0.3)
    return save_png(figure, path)

"""The precision sweep's table: one row per variant (``SweepRow``, as sweep.json stores it), its cells and
the machine line above it. Here, not in ``export.pipeline.sweep``, because the report draws it too and
the report sits below the pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SweepRow:
    """One variant's figures; None where it has none (no file: conversion failed)."""

    name: str
    file: str
    runtime: str
    precision: str  # its row of the tolerance table
    recipe: dict[str, str] | None  # stage -> precision, for recipe variants
    calibration: dict[str, Any] | None  # method and images, for calibrated files
    size_kib: float | None
    size_pct_fp32: float | None  # of the float32 TFLite file, when the sweep has one
    top1_agreement: float | None
    accuracy_drop_pt: float | None  # trained model's accuracy minus the file's, percentage points
    max_abs: float | None
    main_error_stage: str | None  # quantized files: where most error enters
    parity_passed: bool
    p50_us: float | None
    p99_us: float | None
    on_pareto_front: bool = False
    error: str | None = None  # why it has no figures, or which checks it broke

    @property
    def measured(self) -> bool:
        return None not in (self.p50_us, self.top1_agreement, self.size_kib)


HEADER = ("variant", "runtime", "calibration", "size KiB", "% fp32", "top-1", "acc drop", "max abs",
          "error enters at", "parity", "p50 us", "p99 us", "front")


def table_rows(rows: Sequence[SweepRow]) -> list[tuple[str, ...]]:
    """Cells, sorted by p50 (unmeasured rows last); a front row is marked "*"."""

    def num(value: float | None, pattern: str) -> str:
        return "-" if value is None else format(value, pattern)

    ordered = sorted(rows, key=lambda r: (r.p50_us is None, r.p50_us or 0.0, r.name))
    cells = []
    for r in ordered:
        calibration = f"{r.calibration['method']} {r.calibration['images']}" if r.calibration else "-"
        verdict = "pass" if r.parity_passed and not r.error else _short(f"FAILED: {r.error or ''}")
        cells.append((r.name, r.runtime, calibration, num(r.size_kib, ".1f"), num(r.size_pct_fp32, ".0f"),
                      "-" if r.top1_agreement is None else f"{100 * r.top1_agreement:.2f}%",
                      "-" if r.accuracy_drop_pt is None else f"{r.accuracy_drop_pt:+.2f} pt",
                      num(r.max_abs, ".1e"), r.main_error_stage or "-", verdict,
                      num(r.p50_us, ",.0f"), num(r.p99_us, ",.0f"), "*" if r.on_pareto_front else ""))
    return cells


def _short(text: str, width: int = 72) -> str:
    """A table cell's reason, cut to ``width`` (sweep.json keeps it whole)."""
    return text if len(text) <= width else text[: width - 3] + "..."



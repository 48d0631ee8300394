"""The report's microcontroller section: each TFLM file's memory budget and the boards it fits.

Read from the manifest (``details.mcu``, measured by ``export.formats.mcu``), checked
against every board profile of ``runtime.deploy.boards``; nothing is measured here.
"""

from __future__ import annotations

from typing import Any

from export.formats.precision import STAGES
from runtime.tables import html_table, markdown_table
from runtime.deploy.boards import BOARDS, KIB, MemoryBudget, budget_for
from runtime.artifacts.manifest import Manifest

HEADER = ("format", "flash KiB", "arena KiB (smallest / allocate)", "peak activations KiB by stage", "C sources",
          *(f"fits {name}" for name in BOARDS))
NOTE = ("Flash: the model's bytes (the C array). Arena: the smallest TensorFlow Lite Micro ran the file in on this "
        "host, and what mcu/cllnn_model.h allocates (plus 10%, at least 1 KiB, for optimized kernels' scratch "
        "buffers). A board fits when both fit its published flash and RAM; what is left holds the application, "
        "TFLM's code and the stack.")


def mcu_rows(manifest: Manifest) -> list[dict[str, Any]]:
    """One row per file with a measured arena, with whether it fits each board (and what is left)."""
    rows = []
    for entry in manifest.artifacts:
        mcu = entry.details.mcu
        if mcu is None:
            continue
        checks = {name: _board_budget(name).check(mcu) for name in BOARDS}
        fits = {name: {**check.value, "passed": check.passed} for name, check in checks.items()}
        rows.append({"format": entry.format, "file": entry.file, **mcu.to_dict(), "fits": fits})
    return rows


def _board_budget(name: str) -> MemoryBudget:
    budget = budget_for(name)
    assert budget is not None  # a named board always has one
    return budget


def _cells(row: dict[str, Any]) -> list[str]:
    peaks = row["stage_activation_bytes"]
    stages = ", ".join(f"{stage} {peaks[stage] / KIB:,.1f}" for stage in STAGES if stage in peaks)
    fits = [f"yes ({fit['flash_left_bytes'] / KIB:,.0f} / {fit['ram_left_bytes'] / KIB:,.0f} KiB left)"
            if fit["passed"] else "no: " + "; ".join(fit["over"]) for fit in row["fits"].values()]
    return [row["format"], f"{row['flash_bytes'] / KIB:,.1f}",
            f"{row['arena_min_bytes'] / KIB:,.1f} / {row['arena_bytes'] / KIB:,.1f}", stages,
            ", ".join(source["file"] for source in row["sources"]), *fits]


def mcu_markdown(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    return ["", "## Microcontrollers", "", markdown_table(HEADER, [_cells(r) for r in rows]), "", NOTE]


def mcu_html(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    return ["<h2>Microcontrollers</h2>", html_table(HEADER, [_cells(r) for r in rows]), f"<p class='note'>{NOTE}</p>"]

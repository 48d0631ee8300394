"""``results.json``: the suite's measurements keyed by CPU class, so no ratio mixes classes.

    {"layout": 2,
     "classes": {"x86-64 AVX-512 VNNI": RUN, "x86-64 AVX2 (no VNNI)": RUN, ...}}

A RUN is what one run of the suite measured on one machine: ``command``, ``work``,
``prepare``, ``model`` (its run's report.json), ``machine`` (``runtime.bench.latency.environment``'s,
with ``cpu``, ``cpu_arch``, ``cpu_isa``, ``cpu_class``), ``quick``, ``seconds`` and
``sections`` (name -> that section's JSON, with ``measured``, ``seconds`` and ``cpu``).

A run on a new class adds the class; a run on a known class replaces that class's
sections it measured (all of them when it measured every section), and leaves the other
classes alone. The first layout (one machine, ``sections`` at the top, no ISA) is read as
a single class whose ISA was not recorded: nothing is guessed.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from runtime.machine import CpuInfo

LAYOUT = 2
MIGRATED = ("measured before the suite recorded the CPU's instruction sets (results.json's first "
            "layout); its class is unknown")


def empty() -> dict[str, Any]:
    return {"layout": LAYOUT, "classes": {}}


def load(path: Path) -> dict[str, Any]:
    """results.json in this layout, migrating the first one in memory."""
    return migrate(json.loads(path.read_text()))


def migrate(results: dict[str, Any]) -> dict[str, Any]:
    """The current layout from either: a first-layout file becomes one class of unknown ISA."""
    if results.get("layout") == LAYOUT:
        return results
    if "sections" not in results or "machine" not in results:
        raise ValueError(f"not a results.json of the benchmark suite: keys {sorted(results)}")
    machine = {**results["machine"], **CpuInfo.from_record({**results["machine"], "cpu_isa": None}).record()}
    run = {**results, "machine": machine, "migrated": MIGRATED}
    run["sections"] = {name: {"cpu": machine["cpu"], **section} for name, section in results["sections"].items()}
    return {"layout": LAYOUT, "classes": {machine["cpu_class"]: run}}


def cpu_class(run: dict[str, Any]) -> str:
    """The class a run was measured on (its machine record, or the record's fields)."""
    return run["machine"].get("cpu_class") or CpuInfo.from_record(run["machine"]).cpu_class


def add_run(results: dict[str, Any], run: dict[str, Any], every_section: Collection[str]) -> dict[str, Any]:
    """``results`` with ``run`` filed under its class: the sections it measured replace that
    class's; when it measured all of ``every_section``, the class holds this run alone."""
    name = cpu_class(run)
    classes = dict(results["classes"])
    previous = classes.get(name)
    sections = {}
    if previous is not None and not set(every_section) <= set(run["sections"]):
        sections = dict(previous["sections"])
    sections.update({key: {**value, "cpu": run["machine"]["cpu"]} for key, value in run["sections"].items()})
    classes[name] = {**run, "sections": sections}
    return {"layout": LAYOUT, "classes": classes}

"""benchmarks/MCU.md is what benchmarks/mcu.py writes from benchmarks/mcu.json, and its verdicts are
today's board profiles' (a profile changed since the run makes the committed table stale)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.mcu import markdown
from runtime.deploy.boards import BOARDS, budget_for
from runtime.artifacts.manifest import McuRecord

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_the_committed_table_is_generated_from_the_committed_figures() -> None:
    recorded = json.loads((BENCHMARKS / "mcu.json").read_text())
    assert (BENCHMARKS / "MCU.md").read_text() == markdown(recorded["cases"], recorded["machine"])


def test_every_recorded_verdict_is_what_the_board_profiles_say_now() -> None:
    for case in json.loads((BENCHMARKS / "mcu.json").read_text())["cases"]:
        record = McuRecord(flash_bytes=case["flash_bytes"], arena_min_bytes=case["arena_min_bytes"],
                           arena_bytes=case["arena_bytes"])
        assert case["fits"] == {name: budget_for(name).check(record).passed for name in BOARDS}, case["case"]
    seed = next(c for c in json.loads((BENCHMARKS / "mcu.json").read_text())["cases"] if c["case"] == "seed")
    assert (seed["reservoir"], seed["lstm"]) == (512, 128)

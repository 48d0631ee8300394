"""python -m benchmarks --quick: the whole suite still runs end to end (not how fast)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.targets import targets
from runtime.machine import CpuInfo, cpu_info

pytestmark = pytest.mark.slow  # runs the whole benchmark suite (--quick)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def this_class(quick: Path) -> dict[str, Any]:
    """The quick run's results: one CPU class, this machine's."""
    results = json.loads((quick / "results.json").read_text())
    assert list(results["classes"]) == [cpu_info().cpu_class]
    return results["classes"][cpu_info().cpu_class]


def test_quick_suite_writes_every_section(quick: Path) -> None:
    run = this_class(quick)
    assert run["quick"] is True and CpuInfo.from_record(run["machine"]) == cpu_info()
    assert set(run["sections"]) == {"inference", "floor", "training", "scaling", "memory"}
    text = (quick / "RESULTS.md").read_text()
    for heading in (f"## CPU class: {cpu_info().cpu_class}\n\n**{cpu_info().isa_line}.**", "### Targets",
                    "### 1. Inference", "### 2. The compute floor", "### 3. Training", "### 4. Scaling",
                    "### 5. Size and memory", "## Reproducing"):
        assert heading in text, heading
    assert "Quick mode" in text and "nan" not in text.lower().replace("nanoseconds", "")
    links = re.findall(r"\]\((plots/[^)]+\.png)\)", text)
    assert links and all((quick / link).read_bytes()[:4] == b"\x89PNG" for link in links)


def test_every_target_is_reported(quick: Path) -> None:
    run = this_class(quick)
    names = [name for name, _, _ in targets(run["sections"])]
    assert len(names) == 6, names
    batch1 = run["sections"]["inference"]["batch1"]["rows"]
    assert {"seed-form Keras, model.predict", "seed-form Keras, tf.function",
            "trained Keras, model.predict", "runtime tflite-int8"} <= set(batch1)
    assert all(row["p50_us"] > 0 for row in batch1.values())


def test_unknown_section_is_a_usage_error() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--sections", "inference,bogus"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "bogus" in done.stderr

"""What every benchmark section shares: timing side by side, the trained model they
measure, and a JSON result file per section.

Each section is a module with ``main(argv)`` that runs in a process of its own
(``python -m benchmarks.<section> --work DIR --json FILE``): thread settings,
memory and imported libraries of one section cannot leak into another's
figures, and each section's command reproduces its figures alone. A section imports what it
measures at the top of its module (TensorFlow included); run alone, it shows TensorFlow's start-up
lines unless ``TF_CPP_MIN_LOG_LEVEL=2`` is set, as the suite sets it for its sections.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.atomic import write_json_atomic
from runtime.bench.latency import percentile

DEFAULT_WORK = Path("runs/bench")
QUICK_MODEL = {"conv_filters": [4, 8, 16], "reservoir_dim": 64, "lstm_units": 16}


@dataclass(frozen=True)
class SectionArgs:
    work: Path  # the trained model and its exports: WORK/train/model.keras, WORK/artifacts/
    json: Path  # where the section writes its results
    quick: bool


def section_args(argv: Sequence[str] | None, description: str) -> SectionArgs:
    """The command line every section takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help=f"run directory of 'cllnn-export run' (default {DEFAULT_WORK})")
    parser.add_argument("--json", type=Path, required=True, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few calls, tiny work")
    args = parser.parse_args(argv)
    return SectionArgs(args.work, args.json, args.quick)


def save(args: SectionArgs, results: Mapping[str, Any]) -> None:
    write_json_atomic(args.json, dict(results))


def say(line: str) -> None:
    """Progress on stderr, so a section's stdout stays free."""
    print(line, file=sys.stderr, flush=True)


def time_calls(call: Callable[[], object], count: int) -> list[float]:
    """Wall time of ``count`` calls, microseconds each."""
    times = []
    for _ in range(count):
        begin = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - begin) / 1e3)
    return times


def measure(call: Callable[[], object], count: int, *, warmup: int = 3) -> dict[str, float]:
    """``summary`` of ``count`` timed calls of one contender, after ``warmup`` untimed ones."""
    time_calls(call, warmup)
    return summary(time_calls(call, count))


def interleaved(
    contenders: Mapping[str, Callable[[], object]],
    calls: Mapping[str, int],
    rounds: int,
    *,
    warmup: int = 3,
) -> dict[str, list[float]]:
    """Every contender in turn, ``rounds`` times, so machine noise hits all of them alike."""
    for call in contenders.values():
        time_calls(call, warmup)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for index in range(rounds):
        for name, call in contenders.items():
            samples[name].extend(time_calls(call, calls[name]))
        if rounds > 1:
            say(f"  round {index + 1}/{rounds}")
    return samples


def summary(samples: Sequence[float]) -> dict[str, float]:
    """p50 / p99 (``runtime.bench.latency.percentile``, as every figure) / mean of microsecond samples."""
    return {"p50_us": percentile(samples, 50), "p99_us": percentile(samples, 99),
            "mean_us": statistics.fmean(samples), "calls": len(samples)}

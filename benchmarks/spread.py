"""How far training and conversion outcomes move when nothing but chance changes.

The test suite asserts outcomes (validation accuracy after 3 epochs, int8
top-1 agreement, the parity gate) on machines of different CPU classes, whose
kernels round differently, so the same seed trains a slightly different model
on each. This section measures the spread those assertions must cover: it
runs the suite's own cases (``CASES``: epochs, sequence length, formats, as
``tests/e2e`` runs them) once per model seed, through the CLI a user runs
(``train`` -> ``convert`` -> ``parity --json``), and reports every outcome as
a count of images with its minimum, maximum and median over the seeds. A
change of seed perturbs training far more than a change of rounding does,
so the seed spread bounds the CPU-to-CPU one; seed 0 runs twice to show the
run-to-run spread on one machine.

    python -m benchmarks.spread --json benchmarks/spread.json --md benchmarks/SPREAD.md \
        [--seeds 0,1,2,3,4] [--cases t1,t3,t9,e1] [--render]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import say
from export.formats.registry import TFLITE_FP32, TFLITE_INT8
from export.lifeline import child_env, guarded
from runtime.tables import markdown_table
from runtime.atomic import write_bytes_atomic, write_json_atomic
from runtime.checks.metrics import disagreement
from runtime.machine import machine_line

CLI = str(Path(sys.executable).parent / "cllnn-export")


@dataclass(frozen=True)
class Case:
    """One training and export, as a test of the suite runs it."""

    epochs: int
    sequence_length: int
    formats: str  # the CLI's --formats
    test: str  # the tests whose assertions this case backs


CASES = {
    "t1": Case(3, 1, "all", "tests/e2e/test_main_job.py (the session's seed_run)"),
    "t3": Case(3, 3, "all", "tests/e2e/test_train_convert.py::test_longer_sequences_export_and_match[3]"),
    "t9": Case(3, 9, "all", "tests/e2e/test_train_convert.py::test_longer_sequences_export_and_match[9]"),
    "e1": Case(1, 1, f"{TFLITE_FP32.name},{TFLITE_INT8.name}", "tests/e2e/test_run.py (one epoch)"),
}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(guarded([CLI, *args]), capture_output=True, text=True, timeout=3600, env=child_env())
    if done.returncode not in (0, 1):  # 1: a check failed, which is an outcome to record
        raise RuntimeError(f"cllnn-export {args[0]} exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def run_case(case: Case, seed: int, work: Path) -> dict[str, Any]:
    """Train, convert and check one case with one model seed; outcomes as image counts."""
    config = work / "config.toml"
    config.write_text(f"[model]\nseed = {seed}\nsequence_length = {case.sequence_length}\n"
                      f"[train]\nepochs = {case.epochs}\n")
    run_cli("train", "--data", "embedded", "--out", str(work / "train"), "--config", str(config))
    history = json.loads((work / "train" / "history.json").read_text())
    data = history["data"]
    converted = run_cli("convert", str(work / "train" / "model.keras"), "--out", str(work / "artifacts"),
                     "--config", str(config), "--formats", case.formats)
    manifest = json.loads((work / "artifacts" / "manifest.json").read_text())
    run_cli("parity", str(work / "train" / "model.keras"), str(work / "artifacts"), "--data", "embedded",
         "--json", str(work / "parity.json"), "--config", str(config))
    parity = json.loads((work / "parity.json").read_text())
    images = parity["images"]
    formats = {}
    for result in parity["results"]:
        metrics = result["metrics"]
        export_checks = next(a["details"]["checks"] for a in manifest["artifacts"]
                             if a["format"] == result["format"])
        formats[result["format"]] = {
            "top1_disagreements": round(disagreement(metrics["top1_agreement"]) * images),
            "accuracy_change": round(metrics["accuracy_delta"] * images),
            "max_abs": metrics["max_abs"],
            "parity_passed": result["passed"],
            "export_checks_passed": all(c["passed"] for c in export_checks.values()),
        }
    return {
        "seed": seed,
        "val_correct": round(history["final"]["val_accuracy"] * data["val"]),
        "val_images": data["val"],
        "test_correct": round(history["final"]["test_accuracy"] * data["test"]),
        "test_images": data["test"],
        "convert_exit": converted.returncode,
        "formats": formats,
    }


def spread(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """min / median / max over the seeds of every count (seed 0's repeat is left out)."""
    distinct = {run["seed"]: run for run in runs}.values()

    def stats(values: list[float]) -> dict[str, float]:
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}

    formats = sorted({name for run in distinct for name in run["formats"]})
    return {
        "val_correct": stats([r["val_correct"] for r in distinct]),
        "test_correct": stats([r["test_correct"] for r in distinct]),
        "formats": {
            name: {key: stats([r["formats"][name][key] for r in distinct])
                   for key in ("top1_disagreements", "accuracy_change", "max_abs")}
            for name in formats
        },
    }


def markdown(results: dict[str, Any]) -> str:
    """One table per case: every seed's counts, then the spread over the seeds."""
    lines = ["# Outcome spread over model seeds", "",
             f"Written by `python -m benchmarks.spread` (seeds {results['seeds']}); machine: "
             f"{results.get('machine', '?')}. Counts of images: validation images right (of the "
             "validation split), test images right, and per quantized format the test images whose "
             "top-1 class differs from the trained Keras model's. The first seed ran twice: "
             "'repeat identical' says whether one machine gives the same outcome again.", ""]
    for name, case in results["cases"].items():
        runs = list({run["seed"]: run for run in case["runs"]}.values())
        quantized = [f for f in runs[0]["formats"] if any(r["formats"][f]["top1_disagreements"] for r in runs)]
        header = ["seed", "val right", "test right", *[f"{f} disagreements" for f in quantized]]
        rows = [[str(r["seed"]), f"{r['val_correct']}/{r['val_images']}",
                 f"{r['test_correct']}/{r['test_images']}",
                 *[str(r["formats"][f]["top1_disagreements"]) for f in quantized]] for r in runs]
        spread_row = case["spread"]
        rows.append(["min-max", f"{spread_row['val_correct']['min']}-{spread_row['val_correct']['max']}",
                     f"{spread_row['test_correct']['min']}-{spread_row['test_correct']['max']}",
                     *[f"{spread_row['formats'][f]['top1_disagreements']['min']}-"
                       f"{spread_row['formats'][f]['top1_disagreements']['max']}" for f in quantized]])
        info = case["case"]
        lines += [f"## {name}: {info['epochs']} epochs, sequence length {info['sequence_length']}, "
                  f"formats {info['formats']}", "", f"Backs {info['test']}. Repeat identical: "
                  f"{case['repeat_identical']}.", "", markdown_table(header, rows), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="write the results here")
    parser.add_argument("--md", type=Path, help="also write them as Markdown tables")
    parser.add_argument("--render", action="store_true", help="measure nothing: Markdown from --json")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="model seeds (default 0..4)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {', '.join(CASES)} (default: all)")
    args = parser.parse_args(argv)
    if args.render:
        write_bytes_atomic(args.md, markdown(json.loads(args.json.read_text())).encode())
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, Any] = {"seeds": seeds, "machine": machine_line(), "cases": {}}
    for name in args.cases.split(","):
        case = CASES[name]
        runs = []
        for seed in [*seeds, seeds[0]]:  # the first seed again: run-to-run on this machine
            with tempfile.TemporaryDirectory(prefix=f"spread-{name}-") as work:
                run = run_case(case, seed, Path(work))
            runs.append(run)
            say(f"{name} seed {seed}: val {run['val_correct']}/{run['val_images']}, test "
                f"{run['test_correct']}/{run['test_images']}, disagreements "
                + ", ".join(f"{f} {v['top1_disagreements']}" for f, v in run["formats"].items()))
        results["cases"][name] = {"case": case.__dict__, "runs": runs, "spread": spread(runs),
                                  "repeat_identical": runs[0] == runs[-1]}
        write_json_atomic(args.json, results)  # partial results survive an interrupted run
    if args.md:
        write_bytes_atomic(args.md, markdown(results).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

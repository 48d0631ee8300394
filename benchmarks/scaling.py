"""Scaling: how latency, file size and parity error grow with the reservoir and the sequence.

For each point of two sweeps, reservoir_dim at sequence length 1 and
sequence_length at the seed's reservoir of 512, ``cllnn-export run`` trains a
model briefly, exports it, checks parity and benchmarks it (batch 1, one
thread, through ``runtime``); each point is its own run directory, so a
re-run reuses the points already measured with the same inputs. (Batch size
is swept on the main model by ``benchmarks.inference``.)

    python -m benchmarks.scaling --work runs/bench --json scaling.json [--quick]
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import QUICK_MODEL, save, say, section_args
from export.formats.registry import TFLITE_FP32, TFLITE_INT8
from export.lifeline import child_env, guarded

RESERVOIR_DIMS = (128, 256, 512, 1024, 2048)
SEQUENCE_LENGTHS = (1, 2, 3, 4, 6, 9)
FORMATS = (TFLITE_FP32.name, TFLITE_INT8.name)
EPOCHS = 2


def points(quick: bool) -> list[dict[str, int]]:
    """(reservoir_dim, sequence_length) pairs; the shared point is measured once."""
    if quick:
        return [{"reservoir_dim": 32, "sequence_length": 2}]
    sweep = [{"reservoir_dim": r, "sequence_length": 1} for r in RESERVOIR_DIMS]
    sweep += [{"reservoir_dim": 512, "sequence_length": t} for t in SEQUENCE_LENGTHS if t != 1]
    return sweep


def point_config(point: dict[str, int], quick: bool) -> str:
    """A TOML config for one point: a brief training, two formats, the default tolerances."""
    model = {**(QUICK_MODEL if quick else {}), **point}
    lines = ["[model]"] + [f"{key} = {json.dumps(value)}" for key, value in model.items()]
    lines += ["[train]", f"epochs = {1 if quick else EPOCHS}"]
    formats = FORMATS[:1] if quick else FORMATS
    lines += ["[export]", f"formats = {json.dumps(list(formats))}",
              f"calibration_size = {50 if quick else 200}", f"check_size = {200 if quick else 1000}"]
    return "\n".join(lines) + "\n"


def measure(point: dict[str, int], work: Path, quick: bool) -> dict[str, Any]:
    """Run the pipeline for one point; its figures from the run's report.json."""
    out = work / "scaling" / f"r{point['reservoir_dim']}-t{point['sequence_length']}"
    out.mkdir(parents=True, exist_ok=True)
    config = out.parent / f"{out.name}.toml"
    config.write_text(point_config(point, quick))
    cli = str(Path(sys.executable).parent / "cllnn-export")
    done = subprocess.run(guarded([cli, "run", "--data", "embedded", "--out", str(out), "--config", str(config)]),
                          capture_output=True, text=True, check=False, env=child_env())
    report_file = out / "report.json"
    if done.returncode not in (0, 1) or not report_file.is_file():  # 1: a parity check failed
        raise RuntimeError(f"scaling point {point} failed: {done.stderr[-3000:]}")
    report = json.loads(report_file.read_text())
    row: dict[str, Any] = {**point, "test_accuracy": report["training"]["final"]["test_accuracy"],
                           "run_dir": str(out), "formats": {}}
    for fmt in report["formats"]:
        parity = next(r for r in report["parity"]["results"] if r["format"] == fmt["format"])
        row["formats"][fmt["format"]] = {
            "size_kib": fmt["size_kib"], "p50_us": fmt["p50_us"], "p99_us": fmt["p99_us"],
            "max_abs": fmt["max_abs"], "top1_agreement": fmt["top1_agreement"],
            "worst_stage_nrmse": max((s["nrmse"] for s in parity["stages"]), default=None),
            "passed": fmt["passed"],
        }
    return row


def main(argv: Sequence[str] | None = None) -> int:
    args = section_args(argv, "latency, size and parity error against reservoir_dim and sequence_length")
    rows = []
    sweep = points(args.quick)
    for index, point in enumerate(sweep, start=1):
        say(f"scaling [{index}/{len(sweep)}] reservoir_dim {point['reservoir_dim']}, "
            f"sequence_length {point['sequence_length']}")
        rows.append(measure(point, args.work, args.quick))
    save(args, {"epochs": 1 if args.quick else EPOCHS, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

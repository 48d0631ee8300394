"""Which model sizes fit which microcontroller: reservoir and LSTM sizes against flash, arena and accuracy.

For each case (the seed's sizes, and smaller reservoirs and LSTMs; the
integer-only int8 graph and a narrower CNN for the smallest boards) this trains a model on the
embedded data (the seed's 10 epochs, unless ``--epochs``), converts it to
``tflm-int8`` with the same command a user runs, and reads what
``cllnn-export convert`` measured (``details.mcu`` of the manifest: the
file's flash bytes, the smallest tensor arena TensorFlow Lite Micro ran it
in and the arena to allocate with the margin, each stage's peak activation
working set). Accuracy is the trained model's and the TFLM file's, on TFLM's
kernels, on the whole embedded test split (1,000 images). Each board profile
(``runtime.deploy.boards``) says whether the flash image and the arena fit.

    python -m benchmarks.mcu [--work runs/mcu] --json benchmarks/mcu.json --md benchmarks/MCU.md

A case's run directory is reused when it holds a trained model and an
export (delete ``--work`` to start again).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import runtime
from benchmarks.common import say
from cllnn_edge.config import BOUNDED, FLOAT_FRONT
from cllnn_edge.data import load_splits
from export.graph.stages import STAGES
from runtime.tables import markdown_table
from runtime.artifacts.manifest import McuRecord
from runtime.atomic import write_bytes_atomic, write_json_atomic
from runtime.deploy.boards import BOARDS, KIB, budget_for
from runtime.machine import machine_line

CLI = str(Path(sys.executable).with_name("cllnn-export"))


@dataclass(frozen=True)
class Case:
    name: str
    reservoir: int
    lstm: int
    int8_graph: str = FLOAT_FRONT
    conv_filters: tuple[int, ...] = (32, 64, 128)  # the seed's

    def config(self) -> str:
        return (f"[model]\nreservoir_dim = {self.reservoir}\nlstm_units = {self.lstm}\n"
                f"conv_filters = {list(self.conv_filters)}\n[export]\nint8_graph = \"{self.int8_graph}\"\n")


CASES = (
    Case("seed", 512, 128),
    Case("r256-l64", 256, 64),
    Case("r128-l32", 128, 32),
    Case("r128-l32-bounded", 128, 32, BOUNDED),
    # 64 KiB of RAM: the CNN's activations dominate the arena, so its filters are halved too
    Case("c16-r128-l32-bounded", 128, 32, BOUNDED, conv_filters=(16, 32, 64)),
)


def measure(case: Case, work: Path, epochs: int | None) -> dict[str, Any]:
    """Train (unless done), convert to tflm-int8 (unless done), and read the figures."""
    root = work / case.name
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.toml"
    config.write_text(case.config())
    model, artifacts = root / "train" / "model.keras", root / "artifacts"
    if not model.is_file():
        say(f"{case.name}: training (reservoir {case.reservoir}, LSTM {case.lstm})")
        extra = ["--epochs", str(epochs)] if epochs else []
        _cli("train", "--data", "embedded", "--config", str(config), "--out", str(model.parent), *extra)
    if not (artifacts / "manifest.json").is_file():
        say(f"{case.name}: converting to tflm-int8 ({case.int8_graph} int8 graph)")
        _cli("convert", str(model), "--out", str(artifacts), "--formats", "tflm-int8", "--config", str(config))
    manifest = json.loads((artifacts / "manifest.json").read_text())
    (entry,) = manifest["artifacts"]
    history = json.loads((model.parent / "history.json").read_text())
    test = load_splits("embedded").test
    with runtime.load(artifacts / entry["file"]) as micro:  # on TFLM's kernels: the entry says tflm
        tflm_accuracy = float(np.mean(micro.predict(test.x).argmax(1) == test.y))
    mcu = entry["details"]["mcu"]
    return {
        "case": case.name, "conv_filters": list(case.conv_filters), "reservoir": case.reservoir, "lstm": case.lstm,
        "int8_graph": case.int8_graph,
        "trainable_params": history["trainable_params"],
        "keras_test_accuracy": history["final"]["test_accuracy"], "tflm_test_accuracy": tflm_accuracy,
        "test_images": len(test), "top1_agreement": entry["details"]["metrics"]["top1_agreement"],
        "flash_bytes": mcu["flash_bytes"], "arena_min_bytes": mcu["arena_min_bytes"],
        "arena_bytes": mcu["arena_bytes"], "stage_activation_bytes": mcu["stage_activation_bytes"],
        "fits": {name: _fits(name, mcu) for name in BOARDS},
    }


def _fits(board: str, mcu: dict[str, Any]) -> bool:
    budget = budget_for(board)
    assert budget is not None
    return budget.check(McuRecord.from_dict(mcu)).passed


def _cli(*args: str) -> None:
    done = subprocess.run([CLI, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cllnn-export {args[0]} failed ({done.returncode}):\n"
                         f"{done.stdout[-2000:]}{done.stderr[-2000:]}")


def markdown(rows: list[dict[str, Any]], machine: str) -> str:
    boards = list(BOARDS.values())
    header = ("model", "conv filters", "reservoir / LSTM", "int8 graph", "accuracy (Keras)", "accuracy (TFLM int8)",
              "flash KiB",
              "arena KiB (min / allocate)", "peak activations KiB (cnn / reservoir / lstm / head)",
              *(f"fits {b.name}" for b in boards))
    table = [(
        r["case"], "/".join(map(str, r["conv_filters"])), f"{r['reservoir']} / {r['lstm']}", r["int8_graph"],
        f"{100 * r['keras_test_accuracy']:.1f}%",
        f"{100 * r['tflm_test_accuracy']:.1f}%", f"{r['flash_bytes'] / KIB:,.1f}",
        f"{r['arena_min_bytes'] / KIB:,.1f} / {r['arena_bytes'] / KIB:,.1f}",
        " / ".join(f"{r['stage_activation_bytes'].get(s, 0) / KIB:,.1f}" for s in STAGES),
        *("yes" if r["fits"][b.name] else "no" for b in boards),
    ) for r in rows]
    profiles = "; ".join(f"{b.name}: {b.description}, {b.flash_kib:,} KiB flash / {b.ram_kib:,} KiB RAM"
                         for b in boards)
    return "\n".join([
        "# Microcontroller fit: model sizes against boards",
        "",
        "Generated by `python -m benchmarks.mcu --json benchmarks/mcu.json --md benchmarks/MCU.md`.",
        f"Machine: {machine}. Sizes and arenas do not depend on the CPU; accuracies were measured on TFLM's "
        "reference kernels on this host.",
        "",
        f"Each model: trained 10 epochs on the embedded data, exported as tflm-int8; accuracy on the "
        f"{rows[0]['test_images']:,} embedded test images. *Fits* compares the flash image (the model's "
        "bytes) and the arena to allocate (the smallest TFLM ran it in, plus 10%) with the board's published "
        "flash and RAM; what is left must hold the application, TFLM's code and the stack.",
        "",
        markdown_table(header, table),
        "",
        f"Boards: {profiles}.",
        "",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/mcu"))
    parser.add_argument("--epochs", type=int, help="override the seed's 10 epochs (a quick look)")
    parser.add_argument("--cases", help=f"comma-separated subset of {', '.join(c.name for c in CASES)}")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/mcu.json"))
    parser.add_argument("--md", type=Path, default=Path("benchmarks/MCU.md"))
    args = parser.parse_args(argv)
    chosen = [c for c in CASES if not args.cases or c.name in args.cases.split(",")]
    rows = [measure(case, args.work, args.epochs) for case in chosen]
    machine = machine_line()
    write_json_atomic(args.json, {"machine": machine, "epochs": args.epochs or 10, "cases": rows})
    write_bytes_atomic(args.md, markdown(rows, machine).encode())
    say(f"wrote {args.json} and {args.md}")


if __name__ == "__main__":
    main()

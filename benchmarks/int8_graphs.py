"""The int8 graph variants side by side: latency against float32 and fidelity, on this CPU.

``[export] int8_graph`` chooses the graph int8 files are built from
(``cllnn_edge.config.INT8_GRAPHS``, see ``export.graph.unroll``). This section
trains the demo model (sequence length 1, the seed's epochs) and a 3-epoch
model at sequence length 3, converts each with every variant through the
CLI a user runs, and reports per variant and runtime:

- fidelity: test images (of the 1,000 the export checks) whose top-1 class
  differs from the trained Keras model's, at T = 1 and T = 3;
- latency: p50 through ``runtime`` at batch 1 on one thread, every file of
  the T = 1 model timed in interleaved rounds in one process, as a ratio to
  the float32 file of the same runtime. One more contender runs the default
  ONNX int8 file in a session with ONNX Runtime's default graph optimizers
  (``runtime`` turns one off, ``runtime.backends.onnxrt.DISABLED_OPTIMIZERS``).

    python -m benchmarks.int8_graphs --json benchmarks/int8_graphs.json --md benchmarks/INT8_GRAPH.md \
        [--epochs 10] [--rounds 8] [--render]

Ratios compare figures of one run on one machine; the CPU class heads the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

import runtime
from benchmarks.common import interleaved, say, summary
from benchmarks.spread import run_cli
from cllnn_edge.config import FLOAT_FRONT, INT8_GRAPHS
from export.formats.registry import ONNX_FP32, ONNX_INT8, TFLITE_FP32, TFLITE_INT8
from runtime.tables import markdown_table
from runtime.artifacts.manifest import load_manifest
from runtime.atomic import write_bytes_atomic, write_json_atomic
from runtime.checks.metrics import disagreement
from runtime.machine import machine_line

FLOAT_FORMATS = (TFLITE_FP32, ONNX_FP32)
INT8_FORMATS = (TFLITE_INT8, ONNX_INT8)
BASELINE = {TFLITE_INT8.name: TFLITE_FP32.name, ONNX_INT8.name: ONNX_FP32.name}
ORT_DEFAULTS = "onnx-int8, ONNX Runtime's default optimizers"
CALLS_PER_ROUND = 100
SAME_SPEED = 0.05  # the default graph counts as the fastest within 5%


def train(work: Path, sequence_length: int, epochs: int) -> Path:
    config = work / "train.toml"
    config.write_text(f"[model]\nsequence_length = {sequence_length}\n[train]\nepochs = {epochs}\n")
    run_cli("train", "--data", "embedded", "--out", str(work / "train"), "--config", str(config))
    return work / "train" / "model.keras"


def convert(model: Path, out: Path, formats: Sequence[str], sequence_length: int, variant: str) -> Path:
    config = out.with_suffix(".toml")
    config.write_text(f"[model]\nsequence_length = {sequence_length}\n"
                      f"[export]\nint8_graph = \"{variant}\"\nformats = {json.dumps(list(formats))}\n")
    run_cli("convert", str(model), "--out", str(out), "--config", str(config))
    return out


def disagreements(artifacts: Path) -> dict[str, int]:
    """Per format, the check images whose top-1 class differs from the trained model's."""
    manifest = load_manifest(artifacts)
    images = (manifest.metadata.data or {})["check_images"]
    return {entry.format: round(disagreement(entry.details.checks["top1_agreement"].value) * images)
            for entry in manifest.artifacts if "top1_agreement" in entry.details.checks}


def contenders(files: dict[str, Path]) -> dict[str, Callable[[], object]]:
    """``runtime`` calls on one random image per file, and the ONNX Runtime default-session one."""
    image = np.random.default_rng(0).integers(0, 256, (1, 28, 28), dtype=np.uint8)
    calls: dict[str, Callable[[], object]] = {}
    for name, path in files.items():
        model = runtime.load(path, threads=1)
        calls[name] = lambda model=model: model.predict(image)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(files[f"{ONNX_INT8.name} {FLOAT_FRONT}"]), options,
                                   providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: image.astype(np.float32)[..., np.newaxis]}
    calls[ORT_DEFAULTS] = lambda: session.run(None, feed)
    return calls


def measure(epochs: int, rounds: int) -> dict[str, Any]:
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results: dict[str, Any] = {"machine": machine_line(), "measured": started, "epochs": {"1": epochs, "3": 3},
                               "variants": {}}
    with tempfile.TemporaryDirectory(prefix="int8-graphs-") as tmp:
        work = Path(tmp)
        files: dict[str, Path] = {}
        for length, model_epochs in ((1, epochs), (3, 3)):
            case = work / f"t{length}"
            case.mkdir()
            say(f"T = {length}: training {model_epochs} epochs")
            model = train(case, length, model_epochs)
            if length == 1:
                floats = convert(model, case / "float", [f.name for f in FLOAT_FORMATS], length, FLOAT_FRONT)
                files.update({f.name: floats / f.file for f in FLOAT_FORMATS})
            for variant in INT8_GRAPHS:
                say(f"T = {length}: converting the {variant} int8 graph")
                out = convert(model, case / variant, [f.name for f in INT8_FORMATS], length, variant)
                for fmt, count in disagreements(out).items():
                    results["variants"].setdefault(variant, {}).setdefault(fmt, {})[f"t{length}"] = count
                if length == 1:
                    files.update({f"{f.name} {variant}": out / f.file for f in INT8_FORMATS})
        say(f"latency: {len(files) + 1} contenders, {rounds} interleaved rounds of {CALLS_PER_ROUND} calls")
        calls = contenders(files)
        samples = interleaved(calls, {name: CALLS_PER_ROUND for name in calls}, rounds)
    p50 = {name: summary(values)["p50_us"] for name, values in samples.items()}
    results["p50_us"] = p50
    for variant, per_format in results["variants"].items():
        for fmt, row in per_format.items():
            row["p50_us"] = p50[f"{fmt} {variant}"]
            row["vs_float32"] = row["p50_us"] / p50[BASELINE[fmt]]
    results["ort_defaults_vs_float32"] = p50[ORT_DEFAULTS] / p50[ONNX_FP32.name]
    return results


def verdicts(results: dict[str, Any]) -> dict[str, str]:
    """Per int8 format: is the default graph within 5% of the fastest variant at equal or better fidelity?"""
    out = {}
    for fmt in (f.name for f in INT8_FORMATS):
        rows = {variant: per_format[fmt] for variant, per_format in results["variants"].items()}
        default = rows[FLOAT_FRONT]
        rivals = {v: r for v, r in rows.items()
                  if r["t1"] <= default["t1"] and r["t3"] <= default["t3"]}
        fastest = min(rivals, key=lambda v: rivals[v]["p50_us"])
        margin = default["p50_us"] / rivals[fastest]["p50_us"] - 1
        met = margin <= SAME_SPEED
        out[fmt] = (f"{'met' if met else 'NOT met'}: the default ({FLOAT_FRONT}) runs in "
                    f"{default['vs_float32']:.2f}x float32; the fastest variant at equal or better fidelity is "
                    f"{fastest} ({'the default itself' if fastest == FLOAT_FRONT else f'{margin:+.0%}'})")
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = ["# The int8 graph variants: latency and fidelity", "",
             "Written by `python -m benchmarks.int8_graphs --json benchmarks/int8_graphs.json --md "
             f"benchmarks/INT8_GRAPH.md` (measured {results.get('measured', 'at an unrecorded time')}; about 10 "
             f"minutes on 2 cores). Machine: {results['machine']}. Ratios compare files timed in one run on "
             "that machine; other CPU classes may differ (see the README on CPU classes). "
             f"Models: T = 1 trained {results['epochs']['1']} epochs (latency "
             "and fidelity), T = 3 trained 3 epochs (fidelity). Disagreements: of the 1,000 embedded test "
             "images, those whose top-1 class differs from the trained Keras model's. Latency: p50 through "
             "`runtime`, batch 1, one thread, interleaved in one process, as a ratio to the float32 file of "
             "the same runtime.", ""]
    for fmt in (f.name for f in INT8_FORMATS):
        rows = [[variant + (" (default)" if variant == FLOAT_FRONT else ""), str(row["t1"]), str(row["t3"]),
                 f"{row['p50_us']:.0f} us", f"{row['vs_float32']:.2f}x"]
                for variant, per_format in results["variants"].items() for f, row in per_format.items()
                if f == fmt]
        lines += [f"## {fmt} (against {BASELINE[fmt]}, p50 {results['p50_us'][BASELINE[fmt]]:.0f} us)", "",
                  markdown_table(["int8 graph", "disagreements T = 1", "T = 3", "p50", "x float32"], rows), "",
                  f"Default within 5% of the fastest: {verdicts(results)[fmt]}.", ""]
    lines += [f"The default ONNX int8 file in an ONNX Runtime session with its default optimizers ran in "
              f"{results['ort_defaults_vs_float32']:.2f}x the float32 file's time "
              "(`runtime` turns QDQPropagationTransformer off, `runtime.backends.onnxrt.DISABLED_OPTIMIZERS`).", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="write the results here")
    parser.add_argument("--md", type=Path, help="also write them as Markdown tables")
    parser.add_argument("--render", action="store_true", help="measure nothing: Markdown from --json")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the T = 1 model (default: the seed's 10)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved timing rounds (default 8)")
    args = parser.parse_args(argv)
    results = json.loads(args.json.read_text()) if args.render else measure(args.epochs, args.rounds)
    if not args.render:
        write_json_atomic(args.json, results)
    if args.md:
        write_bytes_atomic(args.md, markdown(results).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

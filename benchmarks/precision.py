"""Calibration and per-stage precision choices for AI Edge Quantizer files, measured side by side.

For one trained model (the demo model by default) this converts the unrolled
graph, and its split-projection variant, to float32 TFLite once, then
quantizes each with AI Edge Quantizer (``export.formats.aeq.quantize_tflite``, the
converter ``tflite-int16x8`` and ``tflite-mixed`` use) under each setting,
and compares every file with the float32 file on the embedded test split
(1,000 images, through ``runtime``):

- int16x8 calibration: method (overall ``minmax`` vs AI Edge Quantizer's
  ``moving-average``) x calibration images (100 .. 3,600);
- int16x8 with and without the reservoir's input projection split in two
  exact int8 parts (``export.graph.unroll._split_projection``);
- int16x8 but one stage float32: how much of the error each stage's 8-bit
  weights bring (the sweep's stage attribution, measured by leaving it out);
- per-stage mixes, each converted from the graph ``tflite-mixed`` uses;
- the int16 CNN stage's range headroom (``export.formats.aeq.CNN_INT16_HEADROOM``) against none,
  on the demo model and on two models trained here on ``sklearn-digits`` (the seed's
  sizes, and reservoir 128 / LSTM 32; 10 epochs each), each on its own test split;
- ``onnx-int8`` calibration: ONNX Runtime's methods (minmax, entropy,
  percentile, distribution) x 200 / 1,000 images, quantizing one float ONNX
  file of the int8 graph (tf2onnx, once) with ``export.formats.onnx.quantize_onnx``;
  and ``onnx-mixed`` with the default recipe on 200 / 1,000 images.

    python -m benchmarks.precision [--model runs/demo/train/model.keras] \
        --json benchmarks/precision.json --md benchmarks/PRECISION.md

The float32 TFLite file is the reference (it equals the trained model to 2e-6).
Sizes are file bytes; the CPU class heads the table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import runtime
from benchmarks.common import say
from cllnn_edge.config import FLOAT_FRONT, Config, ExportConfig
from cllnn_edge.data import load_splits
from cllnn_edge.model import load_trained
from cllnn_edge.train import train
from export.formats.aeq import CNN_INT16_HEADROOM, quantize_tflite
from export.formats.isolate import Conversion
from export.formats.onnx import ORT_CALIBRATION, quantize_onnx, to_onnx_float
from export.formats.precision import FLOAT32, INT16X8, MINMAX, MOVING_AVERAGE, STAGES, Recipe
from export.formats.registry import FLOAT_GRAPH, INT8_GRAPH, ONNX_MIXED, SPLIT_GRAPH, TFLITE_MIXED
from export.formats.tflite import to_tflite
from export.graph.unroll import unroll
from runtime.tables import markdown_table
from runtime.atomic import write_bytes_atomic, write_json_atomic
from runtime.checks.metrics import probability_metrics
from runtime.machine import machine_line

SIZES = (100, 200, 500, 1000, 3600)
ONNX_SIZES = (200, 1000)
MIXES = ("cnn=int16x8,reservoir=int16x8,lstm=int16x8,head=int16x8", "cnn=int16x8,reservoir=int16x8",
         "cnn=int16x8", "cnn=float32", "reservoir=int16x8", "")  # unnamed stages: int8
DEFAULT_MODEL = Path("runs/demo/train/model.keras")


def float_tflite(model_path: Path, work: Path, graph: str) -> bytes:
    """One of the graphs formats convert from (``export.formats.registry.Format.graph``) as a float32 TFLite
    file: the unrolled graph, its int8 variant (the default float-front one) or the split projection."""
    saved, out = work / f"saved_{graph}", work / f"float_{graph}.tflite"
    options = {SPLIT_GRAPH: {"split_projection": True}, INT8_GRAPH: {"int8_graph": FLOAT_FRONT}}.get(graph, {})
    unroll(load_trained(model_path), **options).model.export(str(saved), verbose=False)
    to_tflite(saved, out, Conversion(calibration=None, opset=18, per_channel=True), precision="float32")
    return out.read_bytes()


def float_onnx(model_path: Path, work: Path, graph: str) -> tuple[Path, tuple[str, ...]]:
    """A graph formats convert from (the int8 one for onnx-int8) as a float ONNX file, and the layers
    its int8 converter keeps float."""
    unrolled = unroll(load_trained(model_path), int8_graph=FLOAT_FRONT if graph == INT8_GRAPH else None)
    unrolled.model.export(str(work / f"saved_onnx_{graph}"), verbose=False)
    out = work / f"float_{graph}.onnx"
    to_onnx_float(work / f"saved_onnx_{graph}", out, Conversion(calibration=None, opset=18, per_channel=True))
    return out, unrolled.float_layers


def evaluate(data: bytes, images: np.ndarray, reference: np.ndarray, work: Path,
             suffix: str = ".tflite") -> dict[str, float]:
    path = work / f"candidate{suffix}"
    path.write_bytes(data)
    with runtime.load(path, manifest=None) as model:
        metrics = probability_metrics(reference, model.predict(images))
    return {"max_abs": metrics["max_abs"], "top1_agreement": metrics["top1_agreement"],
            "size_kib": len(data) / 1024}


DIGITS_MODELS = {"sklearn-digits, seed sizes": {}, "sklearn-digits, reservoir 128, LSTM 32":
                 {"reservoir_dim": 128, "lstm_units": 32}}


def headroom_rows(model_path: Path, work: Path) -> list[dict[str, Any]]:
    """tflite-int16x8 (1,000 calibration images, minmax) with and without the CNN headroom."""
    models = {"MNIST demo": (model_path, load_splits("embedded"))}
    for name, sizes in DIGITS_MODELS.items():
        digits = load_splits("sklearn-digits")
        trained = train(Config().replace("model", **sizes), digits, work / name.replace(" ", "_"), verbose=0)
        models[name] = (trained.model_path, digits)
    rows = []
    for name, (path, splits) in models.items():
        split = float_tflite(path, work, SPLIT_GRAPH)
        (work / "float.tflite").write_bytes(float_tflite(path, work, FLOAT_GRAPH))
        with runtime.load(work / "float.tflite", manifest=None) as model:
            reference = model.predict(splits.test.x)
        for headroom in (1.0, CNN_INT16_HEADROOM):
            data = quantize_tflite(split, Recipe.uniform(INT16X8), splits.train.x[:1000], MINMAX, headroom)
            rows.append({"study": "cnn headroom", "model": name, "headroom": f"{headroom:g}", "method": MINMAX,
                         "images": min(1000, len(splits.train)),
                         **evaluate(data, splits.test.x, reference, work)})
            say(f"cnn headroom: {rows[-1]}")
    return rows


def measure(model_path: Path) -> dict[str, Any]:
    splits = load_splits("embedded")
    images, calibration = splits.test.x, splits.train.x
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        graphs = {graph: float_tflite(model_path, work, graph) for graph in (FLOAT_GRAPH, INT8_GRAPH, SPLIT_GRAPH)}
        plain, split = graphs[FLOAT_GRAPH], graphs[SPLIT_GRAPH]
        (work / "float.tflite").write_bytes(plain)
        with runtime.load(work / "float.tflite", manifest=None) as model:
            reference = model.predict(images)

        def row(study: str, source: bytes, recipe: Recipe, method: str, size: int, **labels: str) -> None:
            began = time.perf_counter()
            data = quantize_tflite(source, recipe, calibration[:size], method)
            seconds = time.perf_counter() - began
            rows.append({"study": study, "recipe": recipe.tag, "method": method, "images": size, **labels,
                         **evaluate(data, images, reference, work), "quantize_s": seconds})
            say(f"{study}: {rows[-1]}")

        int16x8 = Recipe.uniform(INT16X8)
        for method in (MINMAX, MOVING_AVERAGE):
            for size in SIZES:
                row("calibration", split, int16x8, method, size, graph="split projection")
        for name, source in (("one matrix", plain), ("split projection", split)):
            row("reservoir projection", source, int16x8, MINMAX, 1000, graph=name)
        for stage in STAGES:
            recipe = Recipe.parse({stage: FLOAT32}, default=INT16X8)
            row("one stage float32", plain, recipe, MINMAX, 1000, graph="one matrix", float_stage=stage)
        for spec in MIXES:
            graph = TFLITE_MIXED.with_recipe(Recipe.parse(spec)).graph  # the graph tflite-mixed converts
            row("mixes", graphs[graph], Recipe.parse(spec), MINMAX, 1000, graph=graph)
        def onnx_row(source: Path, name: str, method: str, size: int, **settings: Any) -> None:
            began = time.perf_counter()
            conversion = Conversion(calibration=calibration[:size], opset=18, per_channel=True,
                                    calibration_method=method, **settings)
            quantize_onnx(source, conversion, work / "q.onnx")
            seconds = time.perf_counter() - began
            rows.append({"study": "onnx calibration", "recipe": name, "method": method, "images": size,
                         **evaluate((work / "q.onnx").read_bytes(), images, reference, work, ".onnx"),
                         "quantize_s": seconds})
            say(f"onnx calibration: {rows[-1]}")

        int8_onnx, float_layers = float_onnx(model_path, work, INT8_GRAPH)
        for method in ORT_CALIBRATION:
            for size in ONNX_SIZES:
                onnx_row(int8_onnx, "onnx-int8", method, size, float_layers=float_layers)
        mixed = Recipe.parse(ExportConfig().recipe)
        mixed_onnx, _ = float_onnx(model_path, work, ONNX_MIXED.with_recipe(mixed).graph)
        for size in ONNX_SIZES:
            onnx_row(mixed_onnx, f"onnx-mixed {mixed.tag}", MINMAX, size, recipe=mixed)
        rows.extend(headroom_rows(model_path, work))
    return {"machine": machine_line(), "model": str(model_path), "images": int(len(images)), "rows": rows}


def render(result: dict[str, Any]) -> str:
    def table(study: str, extra: list[str]) -> str:
        chosen = [r for r in result["rows"] if r["study"] == study]
        return markdown_table(
            [*extra, "method", "calibration images", "max abs", "top-1 agreement", "KiB"],
            [[*(str(r.get(key, "")) for key in extra), r["method"], f"{r['images']:,}", f"{r['max_abs']:.4f}",
              f"{100 * r['top1_agreement']:.1f}%", f"{r['size_kib']:,.0f}"] for r in chosen])

    return "\n".join([
        "# Precision choices for AI Edge Quantizer files",
        "",
        f"{result['machine']}. Model: `{result['model']}`; every file against the float32 TFLite file on the "
        f"embedded test split ({result['images']:,} images), through `runtime`. Reproduce: "
        "`python -m benchmarks.precision --json benchmarks/precision.json --md benchmarks/PRECISION.md`.",
        "",
        "## int16x8 calibration: method and images",
        "",
        table("calibration", ["graph"]),
        "",
        "## The reservoir's input projection: one int8 matrix or two exact parts",
        "",
        table("reservoir projection", ["graph"]),
        "",
        "## int16x8 with one stage left float32 (what that stage's 8-bit weights cost)",
        "",
        table("one stage float32", ["float_stage"]),
        "",
        "## ONNX Runtime calibration: methods and images",
        "",
        "Entropy with ONNX Runtime's defaults (128 bins) has one candidate threshold, the whole range: "
        "minmax's bytes. Distribution fails the int8 top-1 gate (0.99).",
        "",
        table("onnx calibration", ["recipe"]),
        "",
        "## Per-stage mixes, as `tflite-mixed` builds them (unnamed stages int8)",
        "",
        "An int8 reservoir is converted from the int8 graph (its tanh input clipped to +-4, "
        "`export.graph.unroll`); an int8 CNN through AI Edge Quantizer is int8 from the standardiser on "
        "(the recipe, not the float front of `tflite-int8`, decides).",
        "",
        table("mixes", ["recipe", "graph"]),
        "",
        "## Headroom for an int16 CNN stage (`tflite-int16x8`, each model on its own test split)",
        "",
        "Every int16x8 row above has the CNN stage's ranges doubled (`export.formats.aeq.CNN_INT16_HEADROOM`). "
        "A test digit a little brighter at an edge column than any calibration image (sklearn-digits: "
        "column 0 reaches 48 in training, 64 in a test digit; that column's deviation is 0.8) leaves the "
        "calibrated range after the standardiser and is clipped at every ReLU; doubled ranges hold it.",
        "",
        table("cnn headroom", ["model", "headroom"]),
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/precision.json"))
    parser.add_argument("--md", type=Path, default=Path("benchmarks/PRECISION.md"))
    args = parser.parse_args(argv)
    result = measure(args.model)
    write_json_atomic(args.json, result)
    write_bytes_atomic(args.md, render(result).encode())
    say(f"wrote {args.json} and {args.md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

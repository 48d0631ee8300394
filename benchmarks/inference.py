"""Inference side by side: every exported format through ``runtime`` against the Keras paths.

Batch 1, one thread (the edge case), interleaved rounds in one process:

- each format of WORK/artifacts through ``runtime.load(..., threads=1).predict``
  (input checks, quantization and dequantization included);
- the seed-form model (``benchmarks.seed``: RNN over the reservoir cell, as
  the seed builds it) by ``model.predict`` and by a ``tf.function`` call, on
  inputs already standardised (the seed's scaler runs outside, in its favour);
- the trained Keras model (``cllnn_edge``) by ``model.predict`` and ``tf.function``.

TensorFlow runs on one intra-op and one inter-op thread. Then, for the
exported formats only: throughput at batch 64 on 1 and 2 threads, and the
time per image across batch sizes.

    python -m benchmarks.inference --work runs/bench --json inference.json [--quick]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

import runtime
from benchmarks.common import interleaved, measure, save, say, section_args, summary
from benchmarks.seed import seed_inputs, seed_model
from cllnn_edge.model import load_trained
from export.layout import RunLayout
from runtime.artifacts.manifest import contained, load_manifest

BATCHES = (1, 4, 16, 64, 256)


def keras_contenders(work: Path, image: Any) -> dict[str, Any]:
    """The four Keras paths on one image."""
    seed = seed_model()
    seed_call = tf.function(seed)
    trained = load_trained(RunLayout(work).model)
    trained_call = tf.function(trained)
    raw = image.astype(np.float32)[..., None]
    standardised = seed_inputs(image)
    return {
        "seed-form Keras, model.predict": lambda: seed.predict(standardised, verbose=0),
        "seed-form Keras, tf.function": lambda: seed_call(standardised).numpy(),
        "trained Keras, model.predict": lambda: trained.predict(raw, verbose=0),
        "trained Keras, tf.function": lambda: trained_call(raw).numpy(),
    }


def artifacts(work: Path) -> list[tuple[str, Path]]:
    layout = RunLayout(work)
    manifest = load_manifest(layout.manifest)
    return [(entry.format, contained(layout.artifacts, entry.file)) for entry in manifest.artifacts]


def batch_one(work: Path, quick: bool) -> dict[str, Any]:
    image = np.random.default_rng(0).integers(0, 256, (1, 28, 28), dtype=np.uint8)
    loaded = {fmt: runtime.load(path, threads=1) for fmt, path in artifacts(work)}
    contenders: dict[str, Any] = {f"runtime {fmt}": (lambda m=m: m.predict(image))
                                  for fmt, m in loaded.items()}
    contenders.update(keras_contenders(work, image))
    calls = {name: (3 if "predict" in name and "Keras" in name else 10) if quick else
             (20 if "model.predict" in name else 100 if "tf.function" in name else 300)
             for name in contenders}
    say("batch 1, one thread: " + ", ".join(contenders))
    samples = interleaved(contenders, calls, rounds=1 if quick else 5)
    rows = {name: summary(values) for name, values in samples.items()}
    best = min(row["p50_us"] for row in rows.values())
    for row in rows.values():
        row["vs_best"] = row["p50_us"] / best
    return {"rows": rows, "best_p50_us": best}


def throughput(work: Path, quick: bool) -> dict[str, Any]:
    """Images per second at batch 64 on 1 and 2 threads, and batch 1 on 2 threads."""
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}
    for fmt, path in artifacts(work):
        for threads in (1, 2):
            with runtime.load(path, threads=threads) as model:
                for batch in (1, 64):
                    images = rng.integers(0, 256, (batch, 28, 28), dtype=np.uint8)
                    stats = measure(lambda x=images: model.predict(x),
                                    3 if quick else (300 if batch == 1 else 30))
                    stats["images_per_s"] = batch / (stats["mean_us"] / 1e6)
                    results[f"{fmt}|{threads}|{batch}"] = {
                        "format": fmt, "threads": threads, "batch": batch, **stats}
        say(f"  throughput: {fmt} done")
    return results


def batch_scaling(work: Path, quick: bool) -> dict[str, Any]:
    """Microseconds per image at each batch size, one thread."""
    rng = np.random.default_rng(0)
    results = {}
    for fmt, path in artifacts(work):
        with runtime.load(path, threads=1) as model:
            for batch in BATCHES[:2] if quick else BATCHES:
                images = rng.integers(0, 256, (batch, 28, 28), dtype=np.uint8)
                count = 3 if quick else max(10, 2000 // batch)
                stats = measure(lambda x=images: model.predict(x), count)
                results[f"{fmt}|{batch}"] = {"format": fmt, "batch": batch,
                                             "us_per_image": stats["p50_us"] / batch, **stats}
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = section_args(argv, "inference latency and throughput, side by side")
    tf.config.threading.set_intra_op_parallelism_threads(1)  # before TensorFlow runs anything
    tf.config.threading.set_inter_op_parallelism_threads(1)
    say("inference: batch 1, one thread, interleaved")
    results = {"batch1": batch_one(args.work, args.quick)}
    say("inference: throughput at 1 and 2 threads")
    results["throughput"] = throughput(args.work, args.quick)
    say("inference: time per image across batch sizes")
    results["batch_scaling"] = batch_scaling(args.work, args.quick)
    save(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

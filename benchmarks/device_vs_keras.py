"""The deployed model against the trained one: latency side by side, and peak memory.

Latency: the int8 TFLite file through ``runtime`` (LiteRT, one thread, batch 1)
against the trained Keras model on one image, by ``model.predict`` and by a
``tf.function`` call, in alternating rounds in one process so machine noise
hits all three. Memory: two fresh processes, one that imports only
``runtime`` and runs the int8 file, one that imports TensorFlow and runs the
Keras model; each reports its own peak resident set size.

    python benchmarks/device_vs_keras.py runs/demo [--rounds 5] [--calls 40] [--json FILE]

``runs/demo`` holds ``train/model.keras`` and ``artifacts/`` (``make demo`` writes both).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RUNTIME_PROCESS = """
import sys, numpy as np, runtime
from runtime.bench import peak_rss_mib
model = runtime.load(sys.argv[1], threads=1)
image = np.random.default_rng(0).integers(0, 256, (1, 28, 28), dtype=np.uint8)
for _ in range(100):
    model.predict(image)
print(peak_rss_mib(), 'tensorflow' in sys.modules)
"""

KERAS_PROCESS = """
import sys, numpy as np, keras, cllnn_edge
from runtime.bench import peak_rss_mib
model = keras.saving.load_model(sys.argv[1])
image = np.random.default_rng(0).integers(0, 256, (1, 28, 28, 1)).astype(np.float32)
for _ in range(100):
    model.predict(image, verbose=0)
print(peak_rss_mib(), 'tensorflow' in sys.modules)
"""


def time_calls(call, count: int) -> list[float]:
    """Microseconds per call, ``count`` calls."""
    times = []
    for _ in range(count):
        begin = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - begin) / 1e3)
    return times


def latency(run_dir: Path, rounds: int, calls: int) -> dict[str, float]:
    import keras
    import numpy as np
    import tensorflow as tf

    import cllnn_edge  # noqa: F401  (registers the custom layers)
    import runtime

    device = runtime.load(run_dir / "artifacts" / "cllnn_int8.tflite", threads=1)
    trained = keras.saving.load_model(run_dir / "train" / "model.keras")
    graph_call = tf.function(trained)
    image = np.random.default_rng(0).integers(0, 256, (1, 28, 28), dtype=np.uint8)
    as_float = image.astype(np.float32)[..., None]
    contenders = {
        "runtime tflite-int8 (1 thread)": lambda: device.predict(image),
        "keras model.predict": lambda: trained.predict(as_float, verbose=0),
        "keras tf.function call": lambda: graph_call(as_float).numpy(),
    }
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for call in contenders.values():  # warm-up: tracing, allocation
        time_calls(call, 5)
    for index in range(rounds):
        for name, call in contenders.items():
            samples[name].extend(time_calls(call, calls))
        print(f"latency round {index + 1}/{rounds}", file=sys.stderr, flush=True)
    return {name: statistics.median(values) for name, values in samples.items()}


def peak_memory(run_dir: Path) -> dict[str, dict[str, object]]:
    figures = {}
    for name, script, target in (
        ("runtime + tflite-int8", RUNTIME_PROCESS, run_dir / "artifacts" / "cllnn_int8.tflite"),
        ("tensorflow + keras", KERAS_PROCESS, run_dir / "train" / "model.keras"),
    ):
        done = subprocess.run([sys.executable, "-c", script, str(target)],
                              capture_output=True, text=True, check=True)
        peak, imported_tf = done.stdout.split()[-2:]
        figures[name] = {"peak_rss_mib": float(peak), "imported_tensorflow": imported_tf == "True"}
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=40, help="calls per contender per round")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    p50 = latency(args.run_dir, args.rounds, args.calls)
    memory = peak_memory(args.run_dir)
    best = p50["runtime tflite-int8 (1 thread)"]
    print("p50 latency, batch 1:")
    for name, value in p50.items():
        print(f"  {name:<32} {value:10.1f} us   {value / best:7.1f}x the runtime's")
    print("peak resident memory:")
    for name, figure in memory.items():
        print(f"  {name:<32} {figure['peak_rss_mib']:8.1f} MiB  tensorflow imported: "
              f"{figure['imported_tensorflow']}")
    ratio = memory["runtime + tflite-int8"]["peak_rss_mib"] / memory["tensorflow + keras"]["peak_rss_mib"]
    print(f"  runtime process / tensorflow process: {ratio:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"p50_us": p50, "memory": memory,
                                         "memory_ratio": ratio}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

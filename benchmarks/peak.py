"""The peak: the MACs per second one core reaches on an ideal layer, through the same runtime.

``peak_probe(kind)`` times one big FULLY_CONNECTED and one big CONV_2D,
compute bound, through LiteRT as ``runtime`` runs files (one thread, default
resolver); ``numpy_peak`` times numpy's single-thread BLAS as a reference
outside LiteRT. Dividing a model's MACs by the peak gives its compute floor.

Probe models need TensorFlow (``pip install -e .[export]``) the first time;
they are cached under the temp directory afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from benchmarks.macs import graph_macs, shape_text
from export.lifeline import child_env, guarded
from runtime.atomic import write_bytes_atomic
from runtime.backends.litert import new_interpreter  # the runtime's own verified loader

PROBE_KINDS = ("float32", "int8")
PROBE_CACHE = Path(tempfile.gettempdir()) / "cllnn-floor-probes"
PROBE_VERSION = 1  # part of the cached file's name: bump it when _convert_probe changes
FC_PROBE = (128, 1024, 1024)  # rows, inputs, outputs: 134M MACs, weights reused 128 times
CONV_PROBE = (28, 28, 128, 3, 128)  # height, width, in channels, kernel, out channels: 116M MACs
WARMUP_RUNS = 10


def peak_probe(kind: str, *, seconds: float = 2.0) -> dict[str, Any]:
    """Best MACs/s one core reaches through LiteRT on an ideal layer, for ``kind`` weights.

    Times one big FULLY_CONNECTED and one big CONV_2D (``seconds`` split
    between them, after a warm-up) through ``ai_edge_litert`` with one thread
    and the default resolver (XNNPACK), as ``runtime`` runs files. The best
    invoke of each is kept: on a shared machine the fastest run is the one
    least disturbed. For float32, numpy's single-thread BLAS is timed too,
    as a reference outside LiteRT.
    """
    if kind not in PROBE_KINDS:
        raise ValueError(f"kind must be one of {PROBE_KINDS}, got {kind!r}")
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    begin = time.perf_counter()
    probes = [_time_probe(kind, layer, seconds / 2) for layer in ("FULLY_CONNECTED", "CONV_2D")]
    best = max(probes, key=lambda probe: probe["macs_per_s"])
    result: dict[str, Any] = {
        "kind": kind,
        "macs_per_s": best["macs_per_s"],
        "gmacs_per_s": round(best["macs_per_s"] / 1e9, 2),
        "best_layer": best["layer"],
        "method": (
            "ai_edge_litert Interpreter, num_threads=1, default resolver (XNNPACK); "
            f"model built by the TFLite converter ({kind}); best of timed invokes after "
            f"{WARMUP_RUNS} warm-up runs"
        ),
        "probes": probes,
    }
    if kind == "float32":
        result["numpy_reference"] = numpy_peak(seconds=min(seconds / 2, 1.0))
    result["elapsed_s"] = round(time.perf_counter() - begin, 2)
    return result


def fill_inputs(interpreter: Any, rng: np.random.Generator) -> None:
    """Random values over each input's dtype: timing only, the values do not matter."""
    for details in interpreter.get_input_details():
        dtype = np.dtype(details["dtype"])
        shape = details["shape"]
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            values = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        else:
            values = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        interpreter.set_tensor(details["index"], values)


def _time_probe(kind: str, layer: str, seconds: float) -> dict[str, Any]:
    path, built_s = _probe_model(kind, layer)
    counted = graph_macs(path)
    interpreter = new_interpreter(path.read_bytes(), path.name, 1)
    interpreter.allocate_tensors()
    fill_inputs(interpreter, np.random.default_rng(0))
    times = _time_calls_for(interpreter.invoke, seconds=seconds, warmup=WARMUP_RUNS)
    macs = counted["total"]
    (conv_or_fc,) = counted["layers"]
    return {
        "layer": layer,
        "shape": conv_or_fc["shape"],
        "macs": macs,
        "best_us": round(min(times) * 1e6, 1),
        "median_us": round(statistics.median(times) * 1e6, 1),
        "runs": len(times),
        "macs_per_s": macs / min(times),
        "model": str(path),
        "build_s": built_s,
    }


def _time_calls_for(call: Callable[[], object], *, seconds: float, warmup: int) -> list[float]:
    """Seconds per call, calling until ``seconds`` have passed (at least 3 timed calls).

    Not ``benchmarks.common.time_calls``: that module imports ``cllnn_edge`` and so Keras, and a
    cached probe must run with the runtime dependencies only.
    """
    for _ in range(warmup):
        call()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < deadline:
        start = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - start) / 1e9)
    return times


def _probe_model(kind: str, layer: str) -> tuple[Path, float | None]:
    """The cached probe file, built with the TFLite converter on first use; (path, build seconds)."""
    shape = FC_PROBE if layer == "FULLY_CONNECTED" else CONV_PROBE
    path = PROBE_CACHE / f"v{PROBE_VERSION}_{layer.lower()}_{shape_text(shape)}_{kind}.tflite"
    if path.is_file():
        return path, None
    begin = time.perf_counter()
    data = _convert_probe(kind, layer, shape)
    write_bytes_atomic(path, data)
    return path, round(time.perf_counter() - begin, 2)


def _convert_probe(kind: str, layer: str, shape: tuple[int, ...]) -> bytes:
    """One Keras layer with random weights through the TFLite converter, as the export does."""
    rng = np.random.default_rng(0)
    if layer == "FULLY_CONNECTED":
        rows, depth, units = shape
        inputs = keras.Input((depth,), batch_size=rows)
        outputs = keras.layers.Dense(units)(inputs)
    else:
        height, width, channels, kernel, filters = shape
        inputs = keras.Input((height, width, channels), batch_size=1)
        outputs = keras.layers.Conv2D(filters, kernel, padding="same")(inputs)
    model = keras.Model(inputs, outputs)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind == "int8":
        sample_shape = tuple(model.input.shape)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.standard_normal(sample_shape).astype(np.float32)] for _ in range(4)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8  # no QUANTIZE op around the layer being timed
        converter.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # Keras prints the SavedModel it exports; the converter warns that an int8 input has no
        # float statistics, which is the point (the probe times the layer, not a QUANTIZE op).
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs", category=UserWarning)
        return bytes(converter.convert())


# The child's timing loop mirrors _time_calls_for rather than importing it: a ``-c`` script
# imports nothing but numpy, whatever the caller's working directory and path.
_NUMPY_PROBE = """
import json, sys, time
import numpy as np
n, seconds = int(sys.argv[1]), float(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
for _ in range(3):
    a @ b
times = []
deadline = time.perf_counter() + seconds
while len(times) < 3 or time.perf_counter() < deadline:
    start = time.perf_counter_ns()
    a @ b
    times.append((time.perf_counter_ns() - start) / 1e9)
print(json.dumps({"best_s": min(times), "runs": len(times), "numpy": np.__version__}))
"""


def numpy_peak(*, size: int = 512, seconds: float = 1.0) -> dict[str, Any]:
    """numpy float32 ``size``^3 matmul in a child process whose BLAS is held to one thread.

    The thread variables only take effect before the BLAS library loads, hence
    the fresh process.
    """
    one_thread = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run(
        guarded([sys.executable, "-c", _NUMPY_PROBE, str(size), str(seconds)]),  # dies with this process
        capture_output=True,
        text=True,
        env=child_env({**os.environ, **one_thread}),
        timeout=60 + seconds,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"numpy probe failed (exit {done.returncode}): {done.stderr[-1000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    macs = size**3
    return {
        "shape": f"{size}x{size} @ {size}x{size}",
        "macs": macs,
        "best_us": round(measured["best_s"] * 1e6, 1),
        "runs": measured["runs"],
        "macs_per_s": macs / measured["best_s"],
        "method": f"numpy {measured['numpy']} float32 matmul, OPENBLAS/OMP/MKL_NUM_THREADS=1, best run",
    }

"""The compute floor: how fast an exported model could run at best on this machine.

Three measurements, each JSON-ready:

- ``graph_macs(path)``: multiply-accumulates per image, read from the exported
  graph itself (op list and tensor shapes), so the count follows the file
  rather than a hand-kept table that drifts from it.
- ``peak_probe(kind)``: the MACs per second one core reaches through the
  same runtime (LiteRT, one thread, default resolver) on an ideal layer: one
  big FULLY_CONNECTED and one big CONV_2D, compute bound.
- ``op_profile(path)``: where one batch-1 inference spends its time, per op.

``floor_us(macs, peak)`` combines the first two into a lower bound on latency:
a model that takes ten times its floor is bound by something other than
arithmetic (memory, op overhead, small kernels).

Probe models need TensorFlow (``pip install -e .[export]``) the first time;
they are cached under the temp directory afterwards. Everything else needs
only the runtime dependencies, plus ``onnx`` to count an ONNX file's MACs.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from runtime.errors import ModelLoadError
from runtime.litert import new_interpreter  # the runtime's own verified loader
from runtime.tflite_check import check_interpreter, looks_like_tflite, op_details, tensor_details

PROBE_KINDS = ("float32", "int8")
PROBE_CACHE = Path(tempfile.gettempdir()) / "cllnn-floor-probes"
PROBE_VERSION = 1  # part of the cached file's name: bump it when _convert_probe changes
FC_PROBE = (128, 1024, 1024)  # rows, inputs, outputs: 134M MACs, weights reused 128 times
CONV_PROBE = (28, 28, 128, 3, 128)  # height, width, in channels, kernel, out channels: 116M MACs
WARMUP_RUNS = 10

# Ops whose cost is one operation per output element, counted apart from MACs.
TFLITE_ELEMENTWISE = frozenset(
    """ABS ADD DIV ELU EXP GELU HARD_SWISH LEAKY_RELU LOG LOGISTIC MAXIMUM MINIMUM MUL NEG POW PRELU
    RELU RELU6 RELU_N1_TO_1 RSQRT SQRT SQUARE SQUARED_DIFFERENCE SUB TANH""".split()
)
ONNX_ELEMENTWISE = frozenset(
    """Abs Add Clip Div Elu Erf Exp Gelu HardSigmoid HardSwish LeakyRelu Log Max Min Mul Neg Pow PRelu
    Reciprocal Relu Sigmoid Sqrt Sub Tanh""".split()
)
# Ops with weights, or with bodies in other subgraphs, that this module does not count: listed in
# the result so a total is never mistaken for complete.
TFLITE_UNCOUNTED = frozenset(
    """CONV_3D CONV_3D_TRANSPOSE SVDF UNIDIRECTIONAL_SEQUENCE_LSTM BIDIRECTIONAL_SEQUENCE_LSTM LSTM RNN
    UNIDIRECTIONAL_SEQUENCE_RNN BIDIRECTIONAL_SEQUENCE_RNN EMBEDDING_LOOKUP WHILE IF CALL_ONCE""".split()
)
ONNX_UNCOUNTED = frozenset("Attention Einsum GRU If LSTM Loop RNN Scan".split())


class Layer(NamedTuple):
    """One op that does matrix work, with its MACs for one image."""

    index: int  # position in the file's op / node list
    op: str
    macs: int
    shape: str
    name: str  # TFLite: the op's first output tensor; ONNX: the node


# --- graph_macs -----------------------------------------------------------------------------


def graph_macs(path: Path) -> dict[str, Any]:
    """MACs per image (batch 1) of a ``.tflite`` or ``.onnx`` file, counted from its graph.

    Dynamic dimensions (-1, symbolic) count as 1. A quantized op counts as its
    float equivalent: an int8 MAC is still a MAC. ``elementwise`` counts output
    elements of activation and arithmetic ops (not MACs; fused activations
    are free and not listed); ``uncounted`` names ops with weights or
    subgraph bodies this function has no rule for. TFLite: subgraph 0 (the
    one LiteRT runs); ONNX: the main graph.
    """
    path = Path(path)
    data = _read(path)
    if looks_like_tflite(data):
        layers, elementwise, uncounted = _tflite_layers(data, path.name)
        fmt = "tflite"
    else:
        layers, elementwise, uncounted = _onnx_layers(path)
        fmt = "onnx"
    by_op: Counter[str] = Counter()
    for layer in layers:
        by_op[layer.op] += layer.macs
    return {
        "file": path.name,
        "format": fmt,
        "batch": 1,
        "total": sum(layer.macs for layer in layers),
        "by_op": dict(by_op.most_common()),
        "layers": [layer._asdict() for layer in layers],
        "elementwise": {"total": sum(elementwise.values()), "by_op": dict(elementwise.most_common())},
        "uncounted": sorted(uncounted),
    }


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc


def _dims(shape: Iterable[int]) -> list[int]:
    """A shape with every dynamic (-1) dimension set to one image."""
    return [1 if int(d) < 0 else int(d) for d in shape]


def _fmt(shape: Iterable[int]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def _tflite_layers(data: bytes, name: str) -> tuple[list[Layer], Counter[str], set[str]]:
    """Walk subgraph 0 with XNNPACK off, so the builtin ops (not a DELEGATE node) are listed."""
    interpreter = new_interpreter(data, name, None, delegates=False)
    check_interpreter(interpreter, name)

    def shape(index: int) -> list[int]:
        details = tensor_details(interpreter, index, name)
        signature = details["shape_signature"]
        return _dims(signature if len(signature) else details["shape"])

    layers: list[Layer] = []
    elementwise: Counter[str] = Counter()
    uncounted: set[str] = set()
    for op in op_details(interpreter, name):
        kind = str(op["op_name"])
        inputs = [int(i) for i in op["inputs"]]
        outputs = [int(i) for i in op["outputs"]]
        rule = _tflite_rule(kind, [shape(i) if i >= 0 else [] for i in inputs], shape(outputs[0]))
        if rule is not None:
            label = str(tensor_details(interpreter, outputs[0], name)["name"]).split(";")[0]
            layers.append(Layer(int(op["index"]), kind, *rule, label))
        elif kind in TFLITE_ELEMENTWISE:
            elementwise[kind] += math.prod(shape(outputs[0]))
        elif kind in TFLITE_UNCOUNTED:
            uncounted.add(kind)
    return layers, elementwise, uncounted


def _tflite_rule(kind: str, ins: list[list[int]], out: list[int]) -> tuple[int, str] | None:
    """(MACs, shape text) from the TFLite operand layouts (schema.fbs); None if not matrix work."""
    if kind == "CONV_2D":  # filter [out_c, kh, kw, in_c / groups]
        _, kh, kw, cin = ins[1]
        return math.prod(out) * kh * kw * cin, f"{_fmt(ins[0])} -> {_fmt(out)}, k {kh}x{kw}x{cin}"
    if kind == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, out_c]
        _, kh, kw, _ = ins[1]
        return math.prod(out) * kh * kw, f"{_fmt(ins[0])} -> {_fmt(out)}, depthwise {kh}x{kw}"
    if kind == "FULLY_CONNECTED":  # weights [units, in]; every leading output dim is a row
        units, depth = ins[1]
        rows = math.prod(out) // max(units, 1)
        return math.prod(out) * depth, f"{rows}x{depth} @ {depth}x{units}"
    if kind == "BATCH_MATMUL":
        return math.prod(out) * _inner_dim(ins[0], out), f"{_fmt(ins[0])} @ {_fmt(ins[1])}"
    if kind == "TRANSPOSE_CONV":  # (output_shape, filter [out_c, kh, kw, in_c], input): scatters each input
        _, kh, kw, _ = ins[1]
        cout = ins[1][0]
        return math.prod(ins[2]) * kh * kw * cout, f"{_fmt(ins[2])} -> {_fmt(out)}"
    return None


def _inner_dim(lhs: list[int], out: list[int]) -> int:
    """The contracted dim of a matmul from its left operand and output.

    Without the adjoint flag: if the left operand's second-last dim equals the
    output's rows it is not transposed and K is its last dim; the only other
    reading, transposed with K == rows, gives the same K.
    """
    if len(lhs) == 1:
        return lhs[0]
    return lhs[-1] if lhs[-2] == out[-2] else lhs[-2]


def _onnx_layers(path: Path) -> tuple[list[Layer], Counter[str], set[str]]:
    """Count after ONNX shape inference; QDQ weights take their shapes from DequantizeLinear."""
    import onnx

    model = _inferred_onnx(path)
    shapes = _onnx_shapes(model.graph)
    layers: list[Layer] = []
    elementwise: Counter[str] = Counter()
    uncounted: set[str] = set()
    for index, node in enumerate(model.graph.node):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        rule = _onnx_rule(node, attrs, shapes, path.name)
        if rule is not None:
            layers.append(Layer(index, node.op_type, *rule, node.name))
        elif node.op_type in ONNX_ELEMENTWISE and node.output[0] in shapes:
            elementwise[node.op_type] += math.prod(shapes[node.output[0]])
        elif node.op_type in ONNX_UNCOUNTED:
            uncounted.add(node.op_type)
    return layers, elementwise, uncounted


def _inferred_onnx(path: Path) -> Any:
    """The ONNX model with inferred shapes; constant shape arithmetic is folded (``data_prop``)."""
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError as exc:
        raise ModelLoadError(
            f"{path.name}: counting ONNX MACs needs the onnx package: pip install onnx"
        ) from exc
    try:
        model = onnx.load(str(path))
    except (DecodeError, OSError) as exc:
        raise ModelLoadError(f"{path.name}: expected a TFLite or ONNX model, cannot parse it: {exc}") from exc
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        raise ModelLoadError(f"{path.name}: ONNX shape inference failed: {exc}") from exc


def _onnx_shapes(graph: Any) -> dict[str, list[int]]:
    """Tensor name -> shape with symbolic or unknown dims as 1; tensors of unknown rank are left out."""
    shapes = {init.name: [int(d) for d in init.dims] for init in graph.initializer}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = info.type.tensor_type
        if tensor_type.HasField("shape"):
            shapes[info.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor_type.shape.dim]
    return shapes


# op_type -> (family, input index of the data / left operand, input index of the weight / right one)
_ONNX_MATRIX_OPS = {
    **{op: ("conv", 0, 1) for op in ("Conv", "ConvInteger", "FusedConv")},
    "QLinearConv": ("conv", 0, 3),
    "ConvTranspose": ("conv_transpose", 0, 1),
    **{op: ("matmul", 0, 1) for op in ("MatMul", "MatMulInteger", "FusedMatMul", "Gemm")},
    **{op: ("matmul", 0, 3) for op in ("QLinearMatMul", "QGemm")},
}


def _onnx_rule(
    node: Any, attrs: dict[str, Any], shapes: dict[str, list[int]], file: str
) -> tuple[int, str] | None:
    """(MACs, shape text) from the ONNX operator specs; None if the node is not matrix work."""
    if node.op_type not in _ONNX_MATRIX_OPS:
        return None
    family, data_at, weight_at = _ONNX_MATRIX_OPS[node.op_type]
    wanted = [node.input[data_at], node.input[weight_at], node.output[0]]
    missing = [t for t in wanted if t not in shapes]
    if missing:
        raise ModelLoadError(
            f"{file}: node {node.name!r} ({node.op_type}): shape inference gave no shape for {missing}; "
            f"cannot count its MACs"
        )
    lhs, rhs, out = (shapes[t] for t in wanted)
    if family == "conv":  # W [M, C / group, k...]
        return math.prod(out) * math.prod(rhs[1:]), f"{_fmt(lhs)} -> {_fmt(out)}, k {_fmt(rhs[2:])}x{rhs[1]}"
    if family == "conv_transpose":  # W [C, M / group, k...]: each input element scatters
        return math.prod(lhs) * math.prod(rhs[1:]), f"{_fmt(lhs)} -> {_fmt(out)}"
    depth = lhs[-2] if attrs.get("transA", 0) else lhs[-1]  # Gemm / FusedMatMul may transpose A
    return math.prod(out) * depth, f"{_fmt(lhs)} @ {_fmt(rhs)}"


# --- peak_probe --------------------------------------------------------------------------


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


def floor_us(macs: int, peak_macs_per_s: float) -> float:
    """Microseconds ``macs`` take at ``peak_macs_per_s``: no kernel on this core runs faster."""
    if not (peak_macs_per_s > 0 and math.isfinite(peak_macs_per_s)):
        raise ValueError(f"peak_macs_per_s must be a positive finite number, got {peak_macs_per_s!r}")
    if macs < 0:
        raise ValueError(f"macs must be non-negative, got {macs!r}")
    return macs / peak_macs_per_s * 1e6


def _time_probe(kind: str, layer: str, seconds: float) -> dict[str, Any]:
    path, built_s = _probe_model(kind, layer)
    counted = graph_macs(path)
    interpreter = new_interpreter(path.read_bytes(), path.name, 1)
    interpreter.allocate_tensors()
    _fill_inputs(interpreter, np.random.default_rng(0))
    times = _time_calls(interpreter.invoke, seconds=seconds, warmup=WARMUP_RUNS)
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


def _time_calls(call: Callable[[], object], *, seconds: float, warmup: int) -> list[float]:
    """Seconds per call, calling until ``seconds`` have passed (at least 3 timed calls)."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < deadline:
        start = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - start) / 1e9)
    return times


def _fill_inputs(interpreter: Any, rng: np.random.Generator) -> None:
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


def _probe_model(kind: str, layer: str) -> tuple[Path, float | None]:
    """The cached probe file, built with the TFLite converter on first use; (path, build seconds)."""
    shape = FC_PROBE if layer == "FULLY_CONNECTED" else CONV_PROBE
    path = PROBE_CACHE / f"v{PROBE_VERSION}_{layer.lower()}_{_fmt(shape)}_{kind}.tflite"
    if path.is_file():
        return path, None
    begin = time.perf_counter()
    data = _convert_probe(kind, layer, shape)
    from cllnn_edge.atomic import write_bytes_atomic  # a concurrent run never reads half a file

    write_bytes_atomic(path, data)
    return path, round(time.perf_counter() - begin, 2)


def _convert_probe(kind: str, layer: str, shape: tuple[int, ...]) -> bytes:
    """One Keras layer with random weights through the TFLite converter, as the export does."""
    import keras
    import tensorflow as tf

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
        [sys.executable, "-c", _NUMPY_PROBE, str(size), str(seconds)],
        capture_output=True,
        text=True,
        env={**os.environ, **one_thread},
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


# --- op_profile ----------------------------------------------------------------------------


def op_profile(path: Path, *, runs: int = 200) -> dict[str, Any]:
    """Time per op type inside one batch-1 inference on one thread.

    ONNX: ONNX Runtime's own profiler (per-kernel times of the optimized
    graph). TFLite: the Python LiteRT API exposes no per-op timer (only the
    C++ ``benchmark_model --enable_op_profiling`` does), so each op is timed
    as the difference between the file cut after it and the file cut before
    it (see ``_tflite_profile``).
    """
    path = Path(path)
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs!r}")
    data = _read(path)
    if looks_like_tflite(data):
        return _tflite_profile(data, path.name, runs)
    return _onnx_profile(data, path.name, runs)


def _share_rows(
    times: dict[str, float], extra: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Rows sorted by time, each with its share of the summed time (and ``extra`` fields)."""
    total = sum(times.values())
    rows = []
    for op, us in sorted(times.items(), key=lambda item: -item[1]):
        row = {"op": op, "us": round(us, 2), "share": us / total if total > 0 else 0.0}
        row.update((extra or {}).get(op, {}))
        rows.append(row)
    return rows


def _onnx_profile(data: bytes, name: str, runs: int) -> dict[str, Any]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="cllnn-ort-profile-") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        feed = {spec.name: _onnx_input(spec) for spec in session.get_inputs()}
        for _ in range(WARMUP_RUNS + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    kernels, run_us = _kept_kernel_events(events, runs)
    per_op: Counter[str] = Counter()
    per_node: Counter[tuple[str, str]] = Counter()
    for event in kernels:
        op = event["args"]["op_name"]
        per_op[op] += event["dur"] / runs
        per_node[(event["name"].removesuffix("_kernel_time"), op)] += event["dur"] / runs
    node_total = sum(per_node.values())
    return {
        "file": name,
        "method": "onnxruntime profiler (enable_profiling), CPUExecutionProvider, "
        "1 intra-op thread, sequential",
        "runs": runs,
        "run_us": round(run_us, 2),
        "kernel_us": round(node_total, 2),
        "ops": _share_rows(dict(per_op)),
        "nodes": [  # the ten slowest
            {"node": node, "op": op, "us": round(us, 2), "share": us / node_total if node_total else 0.0}
            for (node, op), us in per_node.most_common(10)
        ],
        "note": (
            f"microseconds per run, averaged over {runs} runs after {WARMUP_RUNS} warm-up runs; shares "
            "are of the summed kernel time. Ops are those of ONNX Runtime's optimized graph (QDQ pairs "
            "fused into QLinear*/QGemm kernels, etc.), not of the file. run_us (session model_run) "
            "includes the runtime's overhead between kernels; profiling itself adds a little per node."
        ),
    }


def _onnx_input(spec: Any) -> np.ndarray:
    """A random batch-1 tensor for one session input (``tensor(float)`` etc.)."""
    dtypes = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
              "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32}
    if spec.type not in dtypes:
        raise ModelLoadError(f"input {spec.name!r}: cannot make a profiling input of type {spec.type}")
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
    values = np.random.default_rng(0).uniform(0, 100, size=shape)
    return values.astype(dtypes[spec.type])


def _kept_kernel_events(events: list[dict[str, Any]], runs: int) -> tuple[list[dict[str, Any]], float]:
    """Kernel events of the last ``runs`` model runs (warm-up dropped) and their mean run time."""
    model_runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    kept = model_runs[-runs:]
    if len(kept) < runs:
        raise RuntimeError(f"ONNX Runtime's profile holds {len(model_runs)} runs, expected at least {runs}")
    start = kept[0]["ts"]
    kernels = [
        e for e in events
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time") and e["ts"] >= start
    ]
    return kernels, statistics.fmean(e["dur"] for e in kept)


def _tflite_profile(data: bytes, name: str, runs: int) -> dict[str, Any]:
    """Per-op time as the difference of cumulative times of the file cut after each op.

    Cut k keeps the first k ops of subgraph 0 (LiteRT runs them in file
    order) and makes every tensor they produce and do not consume a graph
    output, so no op is dead. An op's time is cut k+1 minus cut k, clipped at
    0: noise can make a cheap op's difference negative, and XNNPACK fuses
    some neighbours (e.g. an activation into a conv), so the figure is good
    for big ops and rough for tiny ones. The MAC share is given beside it.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    graph = new_interpreter(data, name, None, delegates=False)
    check_interpreter(graph, name)
    ops = [str(op["op_name"]) for op in op_details(graph, name)]
    model = flatbuffer_utils.convert_bytearray_to_object(data)
    rounds = max(1, min(10, runs // 10))
    per_round = max(1, runs // rounds)
    cuts = [_cut_interpreter(model, k, name) for k in range(len(ops) + 1)]
    cumulative = _time_cuts(cuts, rounds, per_round)
    steps = [(cumulative[k + 1] - cumulative[k]) * 1e6 for k in range(len(ops))]
    macs = {layer.index: layer.macs for layer in _tflite_layers(data, name)[0]}
    nodes = [
        {"index": k, "op": op, "us": round(max(step, 0.0), 2), "raw_us": round(step, 2),
         "macs": macs.get(k, 0)}
        for k, (op, step) in enumerate(zip(ops, steps, strict=True))
    ]
    clipped = sum(1 for step in steps if step < 0)
    return {
        "file": name,
        "method": "prefix difference: the file cut after each op, timed through ai_edge_litert "
        "(num_threads=1, default resolver with XNNPACK); per-op = cut(k+1) - cut(k)",
        "runs": rounds * per_round,
        "run_us": round(cumulative[-1] * 1e6, 2),
        "empty_us": round(cumulative[0] * 1e6, 2),
        "ops": _op_type_rows(nodes),
        "nodes": nodes,
        "note": (
            "Python LiteRT has no per-op profiler (its Interpreter takes no profiler; per-op timing "
            "lives in the C++ benchmark_model --enable_op_profiling). Times here are differences of "
            f"cumulative times, each cut timed as the fastest of {rounds} interleaved rounds of "
            f"{per_round} invokes; {clipped} negative difference(s) clipped to 0 (raw_us keeps them). "
            "XNNPACK may fuse neighbouring ops, so a tiny op's figure is rough. mac_share is the op's "
            "share of graph_macs, for comparison: a MAC share, not a time share. empty_us is the "
            "invoke overhead of a file with no ops."
        ),
    }


def _time_cuts(interpreters: list[Any], rounds: int, per_round: int) -> list[float]:
    """Seconds per invoke of each interpreter: rounds interleave them, so a burst of load on a
    shared machine hits every cut alike, and each keeps its fastest round."""
    best = [math.inf] * len(interpreters)
    for _ in range(rounds):
        for k, interpreter in enumerate(interpreters):
            best[k] = min(best[k], _mean_call_s(interpreter.invoke, per_round))
    return best


def _op_type_rows(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-node times and MACs summed by op type, with time share and MAC share."""
    per_op: Counter[str] = Counter()
    per_op_macs: Counter[str] = Counter()
    for node in nodes:
        per_op[node["op"]] += node["us"]
        per_op_macs[node["op"]] += node["macs"]
    total_macs = sum(per_op_macs.values())
    mac_share = {op: {"mac_share": per_op_macs[op] / total_macs if total_macs else 0.0} for op in per_op}
    return _share_rows(dict(per_op), mac_share)


def _mean_call_s(call: Callable[[], object], count: int) -> float:
    call()  # the first call after another model's can pay for cold caches
    start = time.perf_counter_ns()
    for _ in range(count):
        call()
    return (time.perf_counter_ns() - start) / 1e9 / count


def _cut_interpreter(model: Any, k: int, name: str) -> Any:
    """An allocated, filled interpreter of ``model``'s first ``k`` ops (subgraph 0)."""
    from ai_edge_litert.tools import flatbuffer_utils

    subgraph = model.subgraphs[0]
    all_ops, all_outputs, signatures = subgraph.operators, subgraph.outputs, model.signatureDefs
    kept = list(all_ops[:k])
    constant = _constant_tensors(model)
    produced = [int(t) for op in kept for t in op.outputs if t >= 0 and int(t) not in constant]
    consumed = {int(t) for op in kept for t in op.inputs if t >= 0}
    frontier = [t for t in produced if t not in consumed] or [int(t) for t in subgraph.inputs]
    try:
        subgraph.operators = kept
        subgraph.outputs = np.asarray(frontier, dtype=np.int32)
        model.signatureDefs = []  # they name outputs the cut may no longer produce
        data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    finally:
        subgraph.operators, subgraph.outputs, model.signatureDefs = all_ops, all_outputs, signatures
    interpreter = new_interpreter(data, f"{name} (first {k} ops)", 1)
    try:
        interpreter.allocate_tensors()
        _fill_inputs(interpreter, np.random.default_rng(0))
        interpreter.invoke()
    except (ValueError, RuntimeError) as exc:
        raise RuntimeError(f"{name}: the file cut after its first {k} ops does not run, so it cannot "
                           f"be profiled this way: {exc}") from exc
    return interpreter


def _constant_tensors(model: Any) -> set[int]:
    """Tensors of subgraph 0 known before any input: weights, and what ops compute from weights only.

    A cut must not output these: the fp16 file's DEQUANTIZE of its weights,
    made a graph output, stopped XNNPACK from setting up ("failed to setup
    XNNPACK runtime"), as it takes them as static weights.
    """
    subgraph = model.subgraphs[0]
    constant = {
        index for index, tensor in enumerate(subgraph.tensors)
        if model.buffers[tensor.buffer].data is not None and len(model.buffers[tensor.buffer].data) > 0
    }
    for op in subgraph.operators:
        if all(int(t) in constant for t in op.inputs if t >= 0):
            constant.update(int(t) for t in op.outputs if t >= 0)
    return constant


# --- the suite's section --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.floor --work DIR --json FILE [--quick]``: MACs, peaks and op
    profiles of every exported file; the suite divides section 1's latencies by the floors."""
    from benchmarks.common import save, say, section_args
    from runtime.manifest import load_manifest

    args = section_args(argv, "compute floor: MACs per image, single-core peaks, op profiles")
    say("floor: peak probes (float32, int8)")
    peaks = {kind: peak_probe(kind, seconds=0.4 if args.quick else 2.0) for kind in PROBE_KINDS}
    formats, profiles = {}, {}
    for entry in load_manifest(args.work / "artifacts").artifacts:
        path = args.work / "artifacts" / entry.file
        say(f"floor: {entry.format}: MACs and op profile")
        macs = graph_macs(path)
        kind = "int8" if "int8" in entry.precision else "float32"  # fp16 kernels compute in float32
        formats[entry.format] = {
            "macs": macs["total"], "by_op": macs["by_op"], "uncounted": macs["uncounted"],
            "elementwise": macs["elementwise"]["total"], "peak_kind": kind,
            "floor_us": floor_us(macs["total"], peaks[kind]["macs_per_s"]),
        }
        profiles[entry.format] = op_profile(path, runs=10 if args.quick else 200)
    save(args, {"peaks": peaks, "numpy": peaks["float32"].get("numpy_reference"),
                "formats": formats, "profiles": profiles})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where one batch-1 inference of an exported file spends its time, per op, on one thread.

ONNX: ONNX Runtime's own profiler (per-kernel times of the optimized graph).
TFLite: the Python LiteRT API exposes no per-op timer (only the C++
``benchmark_model --enable_op_profiling`` does), so each op is timed as the
difference between the file cut after it and the file cut before it.

Both give rows of the same form (op, microseconds, share of the summed time),
so the suite's report reads them alike.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from ai_edge_litert.tools import flatbuffer_utils

from benchmarks.macs import read_model, tflite_ops
from benchmarks.peak import WARMUP_RUNS, fill_inputs
from runtime.backends.litert import new_interpreter  # the runtime's own verified loader
from runtime.backends.onnxrt import DISABLED_OPTIMIZERS
from runtime.backends.tflite_check import looks_like_tflite
from runtime.errors import ModelLoadError

_ONNX_INPUT_DTYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
                      "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


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
    data = read_model(path)
    if looks_like_tflite(data):
        return _tflite_profile(data, path.name, runs)
    return _onnx_profile(data, path.name, runs)


def _share(us: float, total: float) -> float:
    return us / total if total > 0 else 0.0


def _share_rows(
    times: dict[str, float], extra: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Rows sorted by time, each with its share of the summed time (and ``extra`` fields)."""
    total = sum(times.values())
    rows = []
    for op, us in sorted(times.items(), key=lambda item: -item[1]):
        row = {"op": op, "us": round(us, 2), "share": _share(us, total)}
        row.update((extra or {}).get(op, {}))
        rows.append(row)
    return rows


# --- ONNX Runtime's profiler -------------------------------------------------------------------


def _onnx_profile(data: bytes, name: str, runs: int) -> dict[str, Any]:
    kernels, run_us = _kept_kernel_events(_onnx_profile_events(data, runs), runs)
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
            {"node": node, "op": op, "us": round(us, 2), "share": _share(us, node_total)}
            for (node, op), us in per_node.most_common(10)
        ],
        "note": (
            f"microseconds per run, averaged over {runs} runs after {WARMUP_RUNS} warm-up runs; shares "
            "are of the summed kernel time. Ops are those of ONNX Runtime's optimized graph (QDQ pairs "
            "fused into QLinear*/QGemm kernels, etc.), not of the file. run_us (session model_run) "
            "includes the runtime's overhead between kernels; profiling itself adds a little per node."
        ),
    }


def _onnx_profile_events(data: bytes, runs: int) -> list[dict[str, Any]]:
    """The profiler's events of ``WARMUP_RUNS + runs`` sequential one-thread runs on random inputs."""
    with tempfile.TemporaryDirectory(prefix="cllnn-ort-profile-") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        # The graph the runtime runs: the same optimizers off.
        session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"],
                                       disabled_optimizers=list(DISABLED_OPTIMIZERS))
        feed = {spec.name: _onnx_input(spec) for spec in session.get_inputs()}
        for _ in range(WARMUP_RUNS + runs):
            session.run(None, feed)
        return json.loads(Path(session.end_profiling()).read_text())


def _onnx_input(spec: Any) -> np.ndarray:
    """A random batch-1 tensor for one session input (``tensor(float)`` etc.)."""
    if spec.type not in _ONNX_INPUT_DTYPES:
        raise ModelLoadError(f"input {spec.name!r}: cannot make a profiling input of type {spec.type}")
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
    values = np.random.default_rng(0).uniform(0, 100, size=shape)
    return values.astype(_ONNX_INPUT_DTYPES[spec.type])


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


# --- TFLite: differences of prefix cuts --------------------------------------------------------


def _tflite_profile(data: bytes, name: str, runs: int) -> dict[str, Any]:
    """Per-op time as the difference of cumulative times of the file cut after each op.

    Cut k keeps the first k ops of subgraph 0 (LiteRT runs them in file
    order) and makes every tensor they produce and do not consume a graph
    output, so no op is dead. An op's time is cut k+1 minus cut k, clipped at
    0: noise can make a cheap op's difference negative, and XNNPACK fuses
    some neighbours (e.g. an activation into a conv), so the figure is good
    for big ops and rough for tiny ones. The MAC share is given beside it.
    """
    ops = tflite_ops(data, name)
    model = flatbuffer_utils.convert_bytearray_to_object(data)
    rounds = max(1, min(10, runs // 10))
    per_round = max(1, runs // rounds)
    cuts = [_cut_interpreter(model, k, name) for k in range(len(ops) + 1)]
    cumulative = _time_cuts(cuts, rounds, per_round)
    steps = [(cumulative[k + 1] - cumulative[k]) * 1e6 for k in range(len(ops))]
    nodes = [
        {"index": k, "op": op.op, "us": round(max(step, 0.0), 2), "raw_us": round(step, 2), "macs": op.macs}
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


def _mean_call_s(call: Callable[[], object], count: int) -> float:
    """Seconds per call of ``count`` calls timed as one batch, so the timer's own cost is not
    added to every call: the cuts' differences are often well under a microsecond."""
    call()  # the first call after another model's can pay for cold caches
    start = time.perf_counter_ns()
    for _ in range(count):
        call()
    return (time.perf_counter_ns() - start) / 1e9 / count


def _op_type_rows(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-node times and MACs summed by op type, with time share and MAC share."""
    per_op: Counter[str] = Counter()
    per_op_macs: Counter[str] = Counter()
    for node in nodes:
        per_op[node["op"]] += node["us"]
        per_op_macs[node["op"]] += node["macs"]
    total_macs = sum(per_op_macs.values())
    mac_share = {op: {"mac_share": _share(per_op_macs[op], total_macs)} for op in per_op}
    return _share_rows(dict(per_op), mac_share)


def _cut_interpreter(model: Any, k: int, name: str) -> Any:
    """An allocated, filled interpreter of ``model``'s first ``k`` ops (subgraph 0)."""
    interpreter = new_interpreter(_cut_bytes(model, k), f"{name} (first {k} ops)", 1)
    try:
        interpreter.allocate_tensors()
        fill_inputs(interpreter, np.random.default_rng(0))
        interpreter.invoke()
    except (ValueError, RuntimeError) as exc:
        raise RuntimeError(f"{name}: the file cut after its first {k} ops does not run, so it cannot "
                           f"be profiled this way: {exc}") from exc
    return interpreter


def _cut_bytes(model: Any, k: int) -> bytes:
    """The file of ``model``'s first ``k`` ops, every tensor they leave unconsumed made an output.

    ``model`` (the flatbuffer object) is edited in place for the write and restored after it.
    """
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
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    finally:
        subgraph.operators, subgraph.outputs, model.signatureDefs = all_ops, all_outputs, signatures


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

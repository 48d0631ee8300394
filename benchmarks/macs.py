"""Multiply-accumulates per image of an exported ``.tflite`` or ``.onnx`` file, read from its graph.

The count follows the file itself (op list and tensor shapes) rather than a
hand-kept table that drifts from it. TFLite and ONNX differ only in how an op
is read (operand layouts, shape source); both walks describe each op the same
way (``GraphOp``) and one tally turns those into layers, elementwise work and
uncounted ops. ``tflite_ops`` is also the op list ``benchmarks.profiling``
times, so its per-op MACs and the count here cannot disagree.

Needs only the runtime dependencies, plus ``onnx`` to count an ONNX file's MACs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import onnx
from google.protobuf.message import DecodeError

from runtime.backends.litert import new_interpreter  # the runtime's own verified loader
from runtime.backends.tflite_check import check_interpreter, looks_like_tflite, op_details, tensor_details
from runtime.errors import ModelLoadError

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


class GraphOp(NamedTuple):
    """One op as either walk reads it, before it is sorted into layers, elementwise work or neither."""

    index: int
    op: str
    matrix_work: tuple[int, str] | None  # (MACs, shape text), or None if the op is not matrix work
    name: str
    output_elements: int | None  # of its first output; None if its shape is unknown

    @property
    def macs(self) -> int:
        """MACs for one image; 0 if the op is not matrix work."""
        return self.matrix_work[0] if self.matrix_work is not None else 0


class _Tally(NamedTuple):
    layers: list[Layer]
    elementwise: Counter[str]  # op -> output elements
    uncounted: set[str]


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
    data = read_model(path)
    if looks_like_tflite(data):
        tally, fmt = _tally(tflite_ops(data, path.name), TFLITE_ELEMENTWISE, TFLITE_UNCOUNTED), "tflite"
    else:
        tally, fmt = _tally(onnx_ops(path), ONNX_ELEMENTWISE, ONNX_UNCOUNTED), "onnx"
    by_op: Counter[str] = Counter()
    for layer in tally.layers:
        by_op[layer.op] += layer.macs
    return {
        "file": path.name,
        "format": fmt,
        "batch": 1,
        "total": sum(layer.macs for layer in tally.layers),
        "by_op": dict(by_op.most_common()),
        "layers": [layer._asdict() for layer in tally.layers],
        "elementwise": {"total": sum(tally.elementwise.values()), "by_op": dict(tally.elementwise.most_common())},
        "uncounted": sorted(tally.uncounted),
    }


def read_model(path: Path) -> bytes:
    """The file's bytes, or ModelLoadError naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc


def shape_text(shape: Iterable[int]) -> str:
    """``2x3x4``; ``scalar`` for an empty shape."""
    return "x".join(str(d) for d in shape) or "scalar"


def _tally(ops: Iterable[GraphOp], elementwise_ops: frozenset[str], uncounted_ops: frozenset[str]) -> _Tally:
    """Sort ops into matrix layers, elementwise work and ops this module has no rule for."""
    tally = _Tally([], Counter(), set())
    for op in ops:
        if op.matrix_work is not None:
            tally.layers.append(Layer(op.index, op.op, *op.matrix_work, op.name))
        elif op.op in elementwise_ops and op.output_elements is not None:
            tally.elementwise[op.op] += op.output_elements
        elif op.op in uncounted_ops:
            tally.uncounted.add(op.op)
    return tally


# --- TFLite ----------------------------------------------------------------------------------


def tflite_ops(data: bytes, name: str) -> list[GraphOp]:
    """Every op of subgraph 0 in file order (the order LiteRT runs them), read with XNNPACK off
    so the builtin ops (not a DELEGATE node) are listed."""
    interpreter = new_interpreter(data, name, None, delegates=False)
    check_interpreter(interpreter, name)
    return list(_walk_tflite(interpreter, name))


def _walk_tflite(interpreter: Any, name: str) -> Iterator[GraphOp]:
    def shape(index: int) -> list[int]:
        details = tensor_details(interpreter, index, name)
        signature = details["shape_signature"]
        return _dims(signature if len(signature) else details["shape"])

    for op in op_details(interpreter, name):
        kind = str(op["op_name"])
        ins = [shape(int(i)) if i >= 0 else [] for i in op["inputs"]]
        output = int(op["outputs"][0])
        out = shape(output)
        label = str(tensor_details(interpreter, output, name)["name"]).split(";")[0]
        yield GraphOp(int(op["index"]), kind, _tflite_rule(kind, ins, out), label, math.prod(out))


def _dims(shape: Iterable[int]) -> list[int]:
    """A shape with every dynamic (-1) dimension set to one image."""
    return [1 if int(d) < 0 else int(d) for d in shape]


def _tflite_rule(kind: str, ins: list[list[int]], out: list[int]) -> tuple[int, str] | None:
    """(MACs, shape text) from the TFLite operand layouts (schema.fbs); None if not matrix work."""
    if kind == "CONV_2D":  # filter [out_c, kh, kw, in_c / groups]
        _, kh, kw, cin = ins[1]
        return math.prod(out) * kh * kw * cin, f"{shape_text(ins[0])} -> {shape_text(out)}, k {kh}x{kw}x{cin}"
    if kind == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, out_c]
        _, kh, kw, _ = ins[1]
        return math.prod(out) * kh * kw, f"{shape_text(ins[0])} -> {shape_text(out)}, depthwise {kh}x{kw}"
    if kind == "FULLY_CONNECTED":  # weights [units, in]; every leading output dim is a row
        units, depth = ins[1]
        rows = math.prod(out) // max(units, 1)
        return math.prod(out) * depth, f"{rows}x{depth} @ {depth}x{units}"
    if kind == "BATCH_MATMUL":
        return math.prod(out) * _inner_dim(ins[0], out), f"{shape_text(ins[0])} @ {shape_text(ins[1])}"
    if kind == "TRANSPOSE_CONV":  # (output_shape, filter [out_c, kh, kw, in_c], input): scatters each input
        _, kh, kw, _ = ins[1]
        cout = ins[1][0]
        return math.prod(ins[2]) * kh * kw * cout, f"{shape_text(ins[2])} -> {shape_text(out)}"
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


# --- ONNX ------------------------------------------------------------------------------------


def onnx_ops(path: Path) -> list[GraphOp]:
    """Every node of the main graph, read after ONNX shape inference; QDQ weights take their
    shapes from DequantizeLinear."""
    model = _inferred_onnx(path)
    return list(_walk_onnx(model.graph, path.name))


def _walk_onnx(graph: Any, file: str) -> Iterator[GraphOp]:
    shapes = _onnx_shapes(graph)
    for index, node in enumerate(graph.node):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        work = _onnx_rule(node, attrs, shapes, file)
        out = shapes.get(node.output[0]) if node.output else None
        yield GraphOp(index, node.op_type, work, node.name, None if out is None else math.prod(out))


def _inferred_onnx(path: Path) -> Any:
    """The ONNX model with inferred shapes; constant shape arithmetic is folded (``data_prop``)."""
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
        return (math.prod(out) * math.prod(rhs[1:]),
                f"{shape_text(lhs)} -> {shape_text(out)}, k {shape_text(rhs[2:])}x{rhs[1]}")
    if family == "conv_transpose":  # W [C, M / group, k...]: each input element scatters
        return math.prod(lhs) * math.prod(rhs[1:]), f"{shape_text(lhs)} -> {shape_text(out)}"
    depth = lhs[-2] if attrs.get("transA", 0) else lhs[-1]  # Gemm / FusedMatMul may transpose A
    return math.prod(out) * depth, f"{shape_text(lhs)} @ {shape_text(rhs)}"

"""Unroll a trained CLLNN into static ops, proven equivalent.

The trained model's reservoir RNN and LSTM are recurrent layers, which the
TFLite converter turns into tensor-list ops (unsupported by builtins) and
tf2onnx into a ``Loop``. Here every step becomes plain Dense / Add / Multiply /
tanh / sigmoid layers with the trained weights copied in, T = sequence_length
steps written out one after the other.

Work that provably does nothing is left out, because the initial states are
zero: at step 1 the reservoir's ``h0 @ W_res`` and leak term ``(1 - a) * h0``,
the LSTM's recurrent matmul ``h0 @ U`` and its forget gate (``f * c0``) all
vanish. At T = 1 their weights never enter the graph at all (1.25 MiB of
float32 at the defaults). Each omission is recorded in ``UnrollResult.removed``
with the bytes and multiply-accumulates it saves.

``unroll(model, int8_graph=...)`` builds the variant that int8 formats are
calibrated on (``INT8_GRAPHS``). Full-integer kernels give each tensor one
range, taken from calibration, and two tensors of this model have ranges set
by outliers, so ordinary values would get only a few int8 levels:

- the standardised image: edge columns have tiny variance, so a stroke there
  standardises to ~300 while most values lie within +-3;
- the reservoir's tanh input (range ~+-30, saturated beyond +-4).

Every variant but ``plain`` clips the reservoir's tanh input to +-4, computed
as a clip to +-1 of a matmul with weights / 4 so the converter fuses the clip
into the matmul (tanh(4) = 0.9993, so outputs move by < 1e-3). For the image:

- ``float-front`` (the default) keeps the standardiser, conv1 and pool1 in
  float32 inside the int8 file (``UnrollResult.float_layers``; the converters
  leave those layers unquantized): exact, and fast on every CPU. conv1 has a
  single input channel, a GEMM too shallow for int8 kernels: without VNNI
  (AVX2) it ran at ~3 G MAC/s in int8 against ~13 in float32, and it is 3% of
  the model's MACs.
- ``bounded`` stays integer-only (for integer-only targets: microcontrollers,
  NPUs): it splits the image, exactly, into an inner part (pixels clipped to
  mean +- 8 std of their column, then standardised as a 1x1 depthwise
  convolution: range +-8) and the outlier remainder, and runs conv1 on each
  (conv1 is linear before its ReLU, so the sum is the same).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np

from cllnn_edge.config import BOUNDED, FLOAT_FRONT, INT8_GRAPHS, ModelConfig
from cllnn_edge.model import HEAD, INPUT_NAME, STANDARDIZE, config_from_model
from cllnn_edge.preprocessing import Standardize
from export.errors import EquivalenceError, ExportError
from export.graph.layers import Clip, TakeStep
from export.graph.reference import KerasRunner
from export.graph.stages import PROBABILITIES, PROBE_OUTPUTS
from export.graph.weights import GATES, TrainedWeights
from runtime.checks.compare import Comparison, compare
from runtime.checks.tolerances import Tolerance

FLOAT_BYTES = 4
INNER_SIGMAS = 8.0  # bounded variant: the inner part of the image spans mean +- 8 std per column
DRIVE_CLIP = 4.0  # int8 variants: reservoir tanh input clipped to +-4
FRONT_LAYERS = (STANDARDIZE, "conv1", "pool1")  # kept float32 in the float-front variant


@dataclass(frozen=True)
class Removed:
    """One computation the unroller left out, and what that saves."""

    what: str
    why: str
    weight_bytes: int  # float32 weights that no longer enter the graph
    macs_per_image: int  # multiply-accumulates no longer computed per image

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UnrollResult:
    """The static model, a probe of its stage outputs, and what was left out."""

    model: keras.Model
    probe: keras.Model  # same graph, outputs = {stage: tensor} for each of PROBE_OUTPUTS
    config: ModelConfig
    removed: tuple[Removed, ...]
    int8_graph: str | None = None  # the int8 variant this is (INT8_GRAPHS), None: the float graph
    float_layers: tuple[str, ...] = ()  # layers the int8 converters must leave in float32

    @property
    def name(self) -> str:
        return "unrolled graph" if self.int8_graph is None else f"{self.int8_graph} int8 graph"

    def runner(self) -> KerasRunner:
        """The probe behind the runtime's interface, as the reference is."""
        return KerasRunner(self.probe, self.name)

    def removed_summary(self) -> dict[str, Any]:
        return {
            "items": [r.to_dict() for r in self.removed],
            "weight_bytes": sum(r.weight_bytes for r in self.removed),
            "macs_per_image": sum(r.macs_per_image for r in self.removed),
        }


def unroll(trained: keras.Model, *, int8_graph: str | None = None, split_projection: bool = False) -> UnrollResult:
    """Build the static equivalent of ``trained`` (any sequence length).

    ``int8_graph``: one of ``INT8_GRAPHS``, the variant int8 formats are
    calibrated on (see the module docstring); the ``bounded`` and
    ``float-front`` variants are not equivalent to 1e-5, only close.
    ``split_projection``: the reservoir's input projection as two matmuls
    whose sum is exact (``_split_projection``), for int16x8 reservoirs.
    """
    if int8_graph is not None and int8_graph not in INT8_GRAPHS:
        raise ExportError(f"unknown int8 graph {int8_graph!r}; choose one of {', '.join(INT8_GRAPHS)}")
    cfg = config_from_model(trained)
    weights = TrainedWeights.read(trained, cfg)
    pixels = keras.Input(cfg.image_shape, name=INPUT_NAME)
    features = _cnn(pixels, weights, split_first_conv=int8_graph == BOUNDED)
    states = _reservoir(features, cfg, weights, clip_drive=int8_graph in (BOUNDED, FLOAT_FRONT),
                        split_projection=split_projection)
    lstm_h = _lstm(states, cfg, weights)
    head = keras.layers.Dense(cfg.output_dim, activation="softmax", name=HEAD)
    probs = head(lstm_h)
    head.set_weights(weights.head)
    model = keras.Model(pixels, probs, name="cllnn_unrolled")
    reservoir_state = keras.layers.Rescaling(cfg.leak_rate, name="reservoir_state")(states[-1])
    probe = keras.Model(
        pixels, dict(zip(PROBE_OUTPUTS, (features, reservoir_state, lstm_h, probs))), name="cllnn_unrolled_probe"
    )
    return UnrollResult(
        model=model, probe=probe, config=cfg, removed=_removed(cfg), int8_graph=int8_graph,
        float_layers=FRONT_LAYERS if int8_graph == FLOAT_FRONT else (),
    )


def _cnn(pixels: Any, weights: TrainedWeights, *, split_first_conv: bool) -> Any:
    """Standardise, conv/pool stages, flatten."""
    if split_first_conv:
        x = _split_first_conv(pixels, weights)
    else:
        x = _conv(_standardize(pixels, weights.standardize, STANDARDIZE), *weights.convs[0], "conv1")
    x = keras.layers.MaxPooling2D((2, 2), name="pool1")(x)
    for index, (kernel, bias) in enumerate(weights.convs[1:], start=2):
        x = _conv(x, kernel, bias, f"conv{index}")
        x = keras.layers.MaxPooling2D((2, 2), name=f"pool{index}")(x)
    return keras.layers.Flatten(name="cnn_features")(x)


def _reservoir(
    features: Any, cfg: ModelConfig, weights: TrainedWeights, *, clip_drive: bool, split_projection: bool = False
) -> list[Any]:
    """The reservoir states divided by the leak rate, u_t = h_t / a, for t = 1 .. T.

    u_t = (1 - a) u_{t-1} + tanh(x_t @ W_in + u_{t-1} @ (a W_res)), u_1 = tanh(x_1 @ W_in):
    the leak rate lives in the constants (here a W_res, in the LSTM a W), so each
    weight enters the file once. Scaling h by a before each matmul made the
    TFLite converter fold a into one use of W_res and keep a second copy for
    the others. The input projection is one matmul for all steps.
    """
    steps, size, leak = cfg.sequence_length, cfg.reservoir_dim, cfg.leak_rate
    drive_scale = 1.0 / DRIVE_CLIP if clip_drive else 1.0
    if steps > 1:
        features = keras.layers.Reshape((steps, cfg.step_features), name="to_sequence")(features)
    w_in = weights.w_in * drive_scale
    projected = (_split_projection(features, w_in, "reservoir_in") if split_projection
                 else _dense(size, w_in, None, "reservoir_in")(features))
    recurrent = (
        _dense(size, weights.w_res * (leak * drive_scale), None, "reservoir_rec") if steps > 1 else None
    )
    states: list[Any] = []
    for t in range(1, steps + 1):
        drive = projected if steps == 1 else TakeStep(t - 1, name=f"reservoir_in{t}")(projected)
        if states:
            drive = keras.layers.Add(name=f"reservoir_drive{t}")([drive, recurrent(states[-1])])
        if clip_drive:
            drive = Clip(-1.0, 1.0, name=f"reservoir_clip{t}")(drive)
            drive = keras.layers.Rescaling(DRIVE_CLIP, name=f"reservoir_unscale{t}")(drive)
        fresh = keras.layers.Activation("tanh", name=f"reservoir_tanh{t}")(drive)
        if states:  # (1 - a) * h0 is zero at the first step
            kept = keras.layers.Rescaling(1.0 - leak, name=f"reservoir_keep{t}")(states[-1])
            fresh = keras.layers.Add(name=f"reservoir_u{t}")([kept, fresh])
        states.append(fresh)
    return states


def _lstm(states: list[Any], cfg: ModelConfig, weights: TrainedWeights) -> Any:
    """The LSTM over the reservoir states (given as u_t = h_t / a, so its input
    kernels are scaled by a); input projections batched over all steps."""
    steps, units = cfg.sequence_length, cfg.lstm_units
    sequence = states[0]
    if steps > 1:
        rows = [keras.layers.Reshape((1, cfg.reservoir_dim), name=f"lstm_row{t}")(h)
                for t, h in enumerate(states, start=1)]
        sequence = keras.layers.Concatenate(axis=1, name="lstm_inputs")(rows)
    projected = {
        gate: _dense(units, weights.lstm_kernel[gate] * cfg.leak_rate, weights.lstm_bias[gate],
                     f"lstm_{gate}_in")(sequence)
        for gate in GATES
        if steps > 1 or gate != "forget"  # f * c0 is zero at the only step
    }
    recurrent = (
        {g: _dense(units, weights.lstm_recurrent[g], None, f"lstm_{g}_rec") for g in GATES}
        if steps > 1
        else {}
    )
    h = c = None
    for t in range(1, steps + 1):
        inputs = {
            gate: z if steps == 1 else TakeStep(t - 1, name=f"lstm_{gate}_in{t}")(z)
            for gate, z in projected.items()
        }
        h, c = _lstm_step(t, t == steps, inputs, h, c, recurrent)
    return h


def prove_equivalent(
    reference: KerasRunner, result: UnrollResult, images: np.ndarray, tolerance: Tolerance
) -> Comparison:
    """Compare the static graph with the trained model on ``images``; raise if it fails ``tolerance``.

    The error names the first stage past its limit, so a broken unroll points
    at its own bug (the CNN, the reservoir recurrence, the LSTM gates, the head).
    """
    outputs = result.runner().predict_outputs(images)
    comparison = compare(reference.predict_outputs(images), outputs[PROBABILITIES], tolerance, stages=outputs)
    if not comparison:
        (check,) = [c for c in comparison.checks if not c.passed]
        per_stage = ", ".join(f"{s.stage} {s.max_abs:.3g}" for s in comparison.stages)
        raise EquivalenceError(
            f"the {result.name} differs from the trained "
            f"model by {check.value:.3g} ({check.name}, tolerance {check.rule} {check.limit:g}) on "
            f"{len(images)} images; the difference first exceeds its stage limit after the "
            f"{comparison.first_failing_stage!r} stage (max abs per stage: {per_stage})"
        )
    return comparison


def _standardize(x: Any, stats: list[np.ndarray], name: str) -> Any:
    _, _, width, channels = x.shape
    layer = Standardize(width, channels, name=name)
    out = layer(x)
    layer.set_weights(stats)
    return out


def _conv(x: Any, kernel: np.ndarray, bias: np.ndarray | None, name: str, activation: str = "relu") -> Any:
    layer = keras.layers.Conv2D(
        kernel.shape[-1], (3, 3), activation=activation, padding="same",
        use_bias=bias is not None, name=name,
    )
    out = layer(x)
    layer.set_weights([kernel] if bias is None else [kernel, bias])
    return out


def _standardize_per_channel(x: Any, mean: np.ndarray, scale: np.ndarray, name: str) -> Any:
    """Standardise columns as a 1x1 depthwise conv over columns-as-channels (bounded variant).

    As a broadcast multiply, the 28 per-column factors (0.01 .. 1.6) would share
    one int8 scale and the small ones would round to nothing; as depthwise
    weights each column (and colour channel) gets its own (per-channel) quantization scale.
    """
    _, height, width, channels = x.shape
    columns = keras.layers.Reshape((height, 1, width * channels), name=f"{name}_columns")(x)
    layer = keras.layers.DepthwiseConv2D(1, use_bias=True, name=name)
    out = layer(columns)
    layer.set_weights([(1.0 / scale).reshape(1, 1, -1, 1), -mean / scale])
    return keras.layers.Reshape((height, width, channels), name=f"{name}_image")(out)


def _split_first_conv(pixels: Any, weights: TrainedWeights) -> Any:
    """conv1(standardise(x)) as conv1(inner) + conv1(outliers), exactly (bounded variant)."""
    mean, scale = weights.standardize
    columns = (1, 1, pixels.shape[2], pixels.shape[3])
    low = (mean - INNER_SIGMAS * scale).reshape(columns)
    high = (mean + INNER_SIGMAS * scale).reshape(columns)
    clipped = Clip(low.tolist(), high.tolist(), name="clip_pixels")(pixels)
    inner = _standardize_per_channel(clipped, mean, scale, STANDARDIZE)
    excess = keras.layers.Subtract(name="pixel_outliers")([pixels, clipped])
    outliers = _standardize_per_channel(excess, np.zeros_like(mean), scale, "standardize_outliers")
    kernel, bias = weights.convs[0]
    summed = keras.layers.Add(name="conv1_sum")(
        [_conv(inner, kernel, bias, "conv1", None), _conv(outliers, kernel, None, "conv1_outliers", None)]
    )
    return keras.layers.Activation("relu", name="conv1_relu")(summed)


def _lstm_step(
    t: int,
    last: bool,
    projected: dict[str, Any],
    h: Any,
    c: Any,
    gate_rec: dict[str, keras.layers.Dense],
) -> tuple[Any, Any]:
    """One LSTM step from the gates' input projections; at t = 1 (h = c = 0)
    without the recurrent matmuls and the forget gate."""
    activation = {"input": "sigmoid", "forget": "sigmoid", "cell": "tanh", "output": "sigmoid"}
    gates = {}
    for gate, z in projected.items():
        if c is None and gate == "forget":
            continue
        if h is not None:
            z = keras.layers.Add(name=f"lstm_{gate}_sum{t}")([z, gate_rec[gate](h)])
        gates[gate] = keras.layers.Activation(activation[gate], name=f"lstm_{gate}{t}")(z)
    update = keras.layers.Multiply(name=f"lstm_update{t}")([gates["input"], gates["cell"]])
    if c is None:
        c = update
    else:
        kept = keras.layers.Multiply(name=f"lstm_keep{t}")([gates["forget"], c])
        c = keras.layers.Add(name=f"lstm_c{t}")([kept, update])
    squashed = keras.layers.Activation("tanh", name=f"lstm_tanh_c{t}")(c)
    h = keras.layers.Multiply(name="lstm_state" if last else f"lstm_h{t}")(
        [gates["output"], squashed]
    )
    return h, c


def _split_projection(x: Any, kernel: np.ndarray, name: str) -> Any:
    """``x @ kernel`` as ``x @ coarse + x @ residual``: ``coarse`` holds exactly int8 values
    times one scale per output column (that column's max / 127, the scale per-channel int8
    quantization gives it), ``residual`` the rest, at most half a step. Quantized, each keeps
    8-bit weights, and their sum carries ~15 bits: the reservoir's random input weights,
    quantized to int8 in one matrix, moved the demo model's probabilities by up to 0.033 in
    an int16x8 file, split by 0.0076 (benchmarks/PRECISION.md)."""
    step = np.abs(kernel).max(axis=0, keepdims=True) / 127.0
    step[step == 0] = 1.0
    coarse = (np.round(kernel / step) * step).astype(np.float32)
    residual = (kernel - coarse).astype(np.float32)
    units = kernel.shape[1]
    parts = [_dense(units, coarse, None, name)(x), _dense(units, residual, None, f"{name}_residual")(x)]
    return keras.layers.Add(name=f"{name}_sum")(parts)


def _dense(units: int, kernel: np.ndarray, bias: np.ndarray | None, name: str) -> keras.layers.Dense:
    layer = keras.layers.Dense(units, use_bias=bias is not None, name=name)
    layer.build((None, kernel.shape[0]))
    layer.set_weights([kernel] if bias is None else [kernel, bias])
    return layer


def _removed(cfg: ModelConfig) -> tuple[Removed, ...]:
    """What the static graph leaves out, given zero initial states."""
    r, u = cfg.reservoir_dim, cfg.lstm_units
    only_step = cfg.sequence_length == 1
    return (
        Removed(
            what="reservoir recurrent matmul h0 @ W_res at step 1",
            why="the reservoir's initial state h0 is zero",
            weight_bytes=r * r * FLOAT_BYTES if only_step else 0,
            macs_per_image=r * r,
        ),
        Removed(
            what="reservoir leak term (1 - a) * h0 at step 1",
            why="the reservoir's initial state h0 is zero",
            weight_bytes=0,
            macs_per_image=r,
        ),
        Removed(
            what="LSTM recurrent matmul h0 @ U at step 1",
            why="the LSTM's initial hidden state h0 is zero",
            weight_bytes=u * 4 * u * FLOAT_BYTES if only_step else 0,
            macs_per_image=u * 4 * u,
        ),
        Removed(
            what="LSTM forget gate at step 1 (f * c0)",
            why="the LSTM's initial cell state c0 is zero, so the forget gate multiplies zero",
            weight_bytes=(r * u + u) * FLOAT_BYTES if only_step else 0,
            macs_per_image=r * u + u,
        ),
    )

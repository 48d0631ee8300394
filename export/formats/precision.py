"""Precision per stage: recipes, and how each format calibrates.

A ``Recipe`` gives each stage of the unrolled CLLNN (``STAGES``: the CNN, the
reservoir, the LSTM, the softmax head) one precision: float32, int16x8 (16-bit
activations, 8-bit weights) or int8. TFLite variants are built from it with
AI Edge Quantizer (``ai_edge_recipe``: one rule per stage, the layer names as
the rule's regex, as that tool records recipes); ONNX variants with ONNX
Runtime's per-node settings (``export.formats.onnx``). The stages' layers are named
once, here (``STAGE_LAYERS``), for both.

Calibration is a choice per format (``Calibration``): the method and the
number of training images. The methods a converter offers are listed on its
format (``export.formats.registry.Format.calibration_methods``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from export.errors import ExportError
from export.graph.stages import HEAD, STAGES

FLOAT32, INT16X8, INT8 = "float32", "int16x8", "int8"
STAGE_PRECISIONS = (FLOAT32, INT16X8, INT8)  # finest first
SHORT = {FLOAT32: "f32", INT16X8: "i16", INT8: "i8"}  # in variant names

# Layers of the unrolled graph (export.graph.unroll) in each stage, as Keras names them. Converted
# ops and nodes carry them as name segments ("cllnn_unrolled_1/reservoir_in_1/MatMul").
STAGE_LAYERS: Mapping[str, str] = {
    "cnn": r"standardize\w*|clip_pixels|pixel_outliers|conv\d\w*|pool\d|cnn_features|to_sequence",
    "reservoir": r"reservoir_\w+",
    "lstm": r"lstm_\w+",
    HEAD: r"head",  # the layer cllnn_edge.model.HEAD
}

# Calibration methods. "minmax": each tensor's range is the smallest and largest value seen on
# any calibration image (the TFLite converter's, and ONNX Runtime's MinMax). "moving-average":
# AI Edge Quantizer's default, a moving average (0.95) of each image's min / max: it forgets
# the rare stroke at an image's edge, whose standardised value then clips (top-1 agreement
# 99.5% against 100% with minmax, int16x8, demo model). ONNX Runtime also offers
# "entropy", "percentile" and "distribution" (histogram methods that clip outliers on purpose).
MINMAX, MOVING_AVERAGE, ENTROPY, PERCENTILE, DISTRIBUTION = (
    "minmax", "moving-average", "entropy", "percentile", "distribution")
CALIBRATION_METHODS = (MINMAX, MOVING_AVERAGE, ENTROPY, PERCENTILE, DISTRIBUTION)
# Calibration images for a file with an int16x8 stage: its 16-bit ranges must reach the rare
# stroke at an image's edge. Demo model, minmax: int16x8 TFLite max abs 0.34 on 200 images,
# 0.0077 on 500 and more; onnx-mixed (cnn, reservoir int16x8) 0.33 on 200, 0.032 on 1,000. All-int8
# files keep ``export.calibration_size`` (200): there, more images widen ranges with outliers.
WIDE_CALIBRATION_IMAGES = 1000


@dataclass(frozen=True)
class Calibration:
    """How a calibrated format sets its activation ranges."""

    method: str = MINMAX
    images: int = 200  # the first N training images

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "images": self.images}


@dataclass(frozen=True)
class Recipe:
    """One precision per stage, in ``STAGES`` order."""

    precisions: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.precisions) != len(STAGES) or any(p not in STAGE_PRECISIONS for p in self.precisions):
            raise ExportError(f"a recipe gives each of {', '.join(STAGES)} one of "
                              f"{', '.join(STAGE_PRECISIONS)}; got {self.precisions!r}")

    @classmethod
    def uniform(cls, precision: str) -> Recipe:
        return cls((precision,) * len(STAGES))

    @classmethod
    def parse(cls, spec: str | Mapping[str, str], *, default: str = INT8) -> Recipe:
        """``"reservoir=int16x8,cnn=float32"`` or ``{"reservoir": "int16x8"}``; unnamed stages
        take ``default`` (int8: "int8 everywhere but ...")."""
        if isinstance(spec, str):
            pairs = [part.partition("=") for part in spec.split(",") if part.strip()]
            if any(not sep for _, sep, _ in pairs):
                raise ExportError(f"a recipe is STAGE=PRECISION[,...] (e.g. reservoir=int16x8), got {spec!r}")
            spec = {stage.strip(): precision.strip() for stage, _, precision in pairs}
        unknown = sorted(set(spec) - set(STAGES))
        if unknown:
            raise ExportError(f"unknown stage(s) {unknown} in recipe; stages: {', '.join(STAGES)}")
        bad = {stage: p for stage, p in spec.items() if p not in STAGE_PRECISIONS}
        if bad:
            raise ExportError(f"unknown precision(s) {bad} in recipe; choose from {', '.join(STAGE_PRECISIONS)}")
        return cls(tuple(spec.get(stage, default) for stage in STAGES))

    @property
    def stages(self) -> dict[str, str]:
        return dict(zip(STAGES, self.precisions))

    @property
    def tag(self) -> str:
        """Short name for files and variants: "f32-i16-i8-i8" (cnn, reservoir, lstm, head)."""
        return "-".join(SHORT[p] for p in self.precisions)

    @property
    def tolerance_row(self) -> str:
        """The row of the tolerance table a file of this recipe is held to: its coarsest stage's."""
        return max(self.precisions, key=STAGE_PRECISIONS.index)

    def of(self, stage: str) -> str:
        return self.stages[stage]

    def describe(self) -> str:
        kinds = {p: [s for s, q in self.stages.items() if q == p] for p in STAGE_PRECISIONS}
        return "; ".join(f"{p}: {', '.join(stages)}" for p, stages in kinds.items() if stages)

    def to_dict(self) -> dict[str, str]:
        return self.stages


def names_layer(node: str, layers: str) -> bool:
    """Whether a converted op or node belongs to a Keras layer whose name matches ``layers`` (a regex).

    Converters name nodes by their Keras scope, segments joined by "/" (and
    fused ops' names by ";"), with a "_<n>" suffix on each:
    "cllnn_unrolled_1/conv1_1/Relu;cllnn_unrolled_1/conv1_1/BiasAdd" (TFLite),
    "StatefulPartitionedCall/cllnn_unrolled_1/conv1_1/BiasAdd" (tf2onnx).
    A segment matches whole: "conv1_outliers_1" is not "conv1".
    """
    segments = {part for name in node.split(";") for part in name.split("/")}
    return any(re.fullmatch(rf"(?:{layers})(?:_\d+)?", part) for part in segments)


def stage_of(node: str) -> str | None:
    """The stage a converted op or node belongs to, from its name segments (None: none)."""
    return next((stage for stage, pattern in STAGE_LAYERS.items() if names_layer(node, pattern)), None)


def _aeq_scope(stage: str) -> str:
    """AI Edge Quantizer's regex for a stage: it searches an op's output tensor names."""
    return rf"(?:^|[/;])(?:{STAGE_LAYERS[stage]})(?:_\d+)?/"


_TENSOR = {"granularity": "TENSORWISE", "dtype": "INT"}


def _op_config(precision: str) -> tuple[str, dict[str, Any]]:
    """AI Edge Quantizer's settings for one precision, as its own static recipes have them: int16
    activations symmetric (LiteRT's 16x8 kernels take zero point 0), int8 activations with a zero
    point (ReLU outputs use all 256 levels), int8 weights symmetric per output channel."""
    if precision == FLOAT32:
        return "no_quantize", {"compute_precision": "FLOAT"}
    wide = precision == INT16X8
    return "min_max_uniform_quantize", {
        "activation_tensor_config": {**_TENSOR, "num_bits": 16 if wide else 8, "symmetric": wide},
        "weight_tensor_config": {**_TENSOR, "num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE"},
        "compute_precision": "INTEGER",
        "explicit_dequantize": False,
        "skip_checks": False,
        "min_weight_elements": 0,
    }


def ai_edge_recipe(recipe: Recipe) -> list[dict[str, Any]]:
    """The recipe as AI Edge Quantizer takes (and records) it: one rule per stage, matched by
    layer name, and the head's SOFTMAX by op (its output is the model's, named after no layer)."""
    rules = []
    for stage, precision in recipe.stages.items():
        algorithm, config = _op_config(precision)
        rules.append({"regex": _aeq_scope(stage), "operation": "*", "algorithm_key": algorithm,
                      "op_config": config})
    algorithm, config = _op_config(recipe.of(HEAD))
    rules.append({"regex": ".*", "operation": "SOFTMAX", "algorithm_key": algorithm, "op_config": config})
    return rules

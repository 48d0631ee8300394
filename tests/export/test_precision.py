"""Precision per stage: recipes, the layers each stage owns, calibration choices per format."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cllnn_edge.config import Config, ConfigError
from export.errors import ExportError
from export.formats.registry import FLOAT_GRAPH, FORMATS, INT8_GRAPH, SPLIT_GRAPH, calibration_for, formats_for, parse_formats
from export.formats.precision import FLOAT32, INT8, INT16X8, STAGES, Recipe, ai_edge_recipe, stage_of
from runtime.backends import tflm


def test_a_recipe_names_stages_and_the_rest_are_int8() -> None:
    recipe = Recipe.parse("reservoir=int16x8, cnn=float32")
    assert recipe.stages == {"cnn": FLOAT32, "reservoir": INT16X8, "lstm": INT8, "head": INT8}
    assert recipe.tag == "f32-i16-i8-i8"
    assert recipe.tolerance_row == INT8  # held to its coarsest stage's row
    assert Recipe.parse({"reservoir": "int16x8"}) == Recipe.parse("reservoir=int16x8")
    assert Recipe.uniform(INT16X8).tolerance_row == INT16X8
    assert Recipe.parse("", default=FLOAT32).tolerance_row == FLOAT32


@pytest.mark.parametrize(("spec", "message"), [
    ("reservoir:int16x8", "STAGE=PRECISION"),
    ("conv=int8", r"unknown stage\(s\) \['conv'\]"),
    ("head=int4", r"unknown precision\(s\) \{'head': 'int4'\}"),
])
def test_a_bad_recipe_names_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        Recipe.parse(spec)


@pytest.mark.parametrize(("node", "stage"), [
    ("cllnn_unrolled_1/standardize_1/sub", "cnn"),  # TFLite op
    ("cllnn_unrolled_1/conv3_1/Relu;cllnn_unrolled_1/conv3_1/BiasAdd", "cnn"),
    ("cllnn_unrolled_1/cnn_features_1/Reshape", "cnn"),
    ("StatefulPartitionedCall/cllnn_unrolled_1/reservoir_in_1/MatMul", "reservoir"),  # tf2onnx node
    ("cllnn_unrolled_1/reservoir_in_residual_1/MatMul", "reservoir"),
    ("cllnn_unrolled_1/lstm_output_in_1/MatMul;cllnn_unrolled_1/lstm_output_in_1/BiasAdd", "lstm"),
    ("cllnn_unrolled_1/lstm_state_1/Mul", "lstm"),
    ("cllnn_unrolled_1/head_1/MatMul", "head"),
    ("StatefulPartitionedCall:0", None),  # the softmax's output: matched by op, not name
])
def test_every_layer_belongs_to_one_stage(node: str, stage: str | None) -> None:
    assert stage_of(node) == stage


def test_the_ai_edge_recipe_has_one_rule_per_stage_matching_only_its_layers() -> None:
    rules = ai_edge_recipe(Recipe.parse("cnn=float32,reservoir=int16x8"))
    assert [rule["algorithm_key"] for rule in rules] == [
        "no_quantize", "min_max_uniform_quantize", "min_max_uniform_quantize", "min_max_uniform_quantize",
        "min_max_uniform_quantize"]
    bits = [rule["op_config"].get("activation_tensor_config", {}).get("num_bits") for rule in rules]
    assert bits == [None, 16, 8, 8, 8]
    symmetric = [rule["op_config"].get("activation_tensor_config", {}).get("symmetric") for rule in rules]
    assert symmetric == [None, True, False, False, False]  # int16: zero point 0; int8: all 256 levels
    assert rules[-1]["operation"] == "SOFTMAX"
    scopes = {"cnn": "cllnn_unrolled_1/conv2_1/Relu", "reservoir": "cllnn_unrolled_1/reservoir_tanh1_1/Tanh",
              "lstm": "cllnn_unrolled_1/lstm_cell1_1/Tanh", "head": "cllnn_unrolled_1/head_1/MatMul"}
    for stage, rule in zip(STAGES, rules):
        assert [s for s, scope in scopes.items() if re.search(rule["regex"], scope)] == [stage]


def test_all_means_the_fixed_formats_and_mixed_ones_take_the_config_recipe() -> None:
    microcontroller = ["tflm-int8"] if tflm.available() else []  # where the tflm extra is installed
    assert [f.name for f in parse_formats("all")] == [
        "tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8", "tflite-int16x8", "onnx-fp32", "onnx-int8",
        *microcontroller]
    cfg = Config.from_dict({"export": {"formats": ["tflite-mixed", "tflite-int16x8"],
                                       "recipe": {"cnn": "float32", "reservoir": "int16x8"}}})
    mixed, int16x8 = formats_for(cfg)
    assert mixed.recipe == Recipe.parse("cnn=float32,reservoir=int16x8")
    assert (mixed.file, mixed.precision, mixed.graph, mixed.converter) == (
        "cllnn_mixed.tflite", INT8, FLOAT_GRAPH, "tflite-mixed")
    assert formats_for(cfg.replace("export", recipe={}))[0].graph == INT8_GRAPH  # int8 reservoir: clipped drive
    assert int16x8.recipe == Recipe.uniform(INT16X8) and int16x8.graph == SPLIT_GRAPH
    variant = FORMATS["onnx-mixed"].with_recipe(Recipe.uniform(INT8), variant=True)
    assert (variant.name, variant.file, variant.converter) == (
        "onnx-mixed-i8-i8-i8-i8", "cllnn_mixed_i8-i8-i8-i8.onnx", "onnx-mixed")
    with pytest.raises(ExportError, match="fixed precision"):
        FORMATS["tflite-int8"].with_recipe(Recipe.uniform(INT8))


def test_calibration_is_chosen_per_format_over_its_defaults() -> None:
    cfg = Config.from_dict({"export": {"calibration": {"onnx-int8": {"method": "entropy", "images": 500}}}})
    assert calibration_for(FORMATS["onnx-int8"], cfg).to_dict() == {"method": "entropy", "images": 500}
    assert calibration_for(FORMATS["tflite-int8"], cfg).to_dict() == {"method": "minmax", "images": 200}
    assert calibration_for(FORMATS["tflite-int16x8"], cfg).to_dict() == {"method": "minmax", "images": 1000}
    wrong = Config.from_dict({"export": {"calibration": {"tflite-int8": {"method": "entropy"}}}})
    with pytest.raises(ExportError, match="tflite-int8 calibrates with minmax; .*asks for 'entropy'"):
        calibration_for(FORMATS["tflite-int8"], wrong)


@pytest.mark.parametrize(("export", "message"), [
    ({"recipe": ["int8"]}, "export.recipe must be a table"),
    ({"calibration": {"onnx-int8": {"images": 0}}}, r"\[export.calibration.onnx-int8\] images must be a positive"),
    ({"calibration": {"onnx-int8": {"size": 10}}}, r"unknown key\(s\) in \[export.calibration.onnx-int8\]"),
    ({"calibration": {"onnx-int8": "entropy"}}, "must be a table"),
])
def test_bad_precision_settings_are_config_errors(export: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"export": export})


def test_the_split_projection_sums_to_the_weights_and_its_coarse_part_is_int8_exact() -> None:
    from cllnn_edge.config import ModelConfig
    from cllnn_edge.data import load_splits
    from cllnn_edge.model import build_model
    from cllnn_edge.preprocessing import fit_standardizer
    from export.graph.reference import trained_reference
    from export.graph.unroll import prove_equivalent, unroll
    from runtime.checks.tolerances import ToleranceConfig

    images = load_splits("embedded").test.x[:64]
    trained = build_model(ModelConfig(conv_filters=(4, 8, 16), reservoir_dim=48, lstm_units=12),
                          fit_standardizer(images))
    split = unroll(trained, split_projection=True)
    prove_equivalent(trained_reference(trained), split, images, ToleranceConfig()["float32"])
    coarse = split.model.get_layer("reservoir_in").get_weights()[0]
    residual = split.model.get_layer("reservoir_in_residual").get_weights()[0]
    step = np.abs(coarse).max(axis=0) / 127
    assert np.allclose(coarse / step, np.round(coarse / step), atol=1e-3)
    assert np.all(np.abs(residual) <= step / 2 + 1e-7)


def test_stage_names_have_one_home_and_keep_the_names_on_disk() -> None:
    """Recipes name the head's stage 'head'; probes, check sets and parity.json name its output
    'output' (runtime reads that key): both derive from export.graph.stages, so they cannot drift."""
    from export.graph import stages
    from export.graph.reference import PROBE_OUTPUTS as read_by_reference

    assert STAGES is stages.STAGES and STAGES == ("cnn", "reservoir", "lstm", "head")
    assert stages.PROBE_OUTPUTS == ("cnn", "reservoir", "lstm", "output") and read_by_reference is stages.PROBE_OUTPUTS
    assert [stages.output_of(s) for s in STAGES] == list(stages.PROBE_OUTPUTS)
    assert Recipe.parse("cnn=int16x8,head=int8", default=FLOAT32).stages == {"cnn": INT16X8, "reservoir": FLOAT32,
                                                                 "lstm": FLOAT32, "head": INT8}
    with pytest.raises(ValueError, match="unknown stage 'output'"):
        stages.output_of("output")

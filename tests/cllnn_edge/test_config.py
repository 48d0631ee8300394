"""Config: the seed's defaults, TOML loading, and validation that names the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from cllnn_edge.config import MAX_WEIGHT_BYTES, Config, ModelConfig, TrainConfig, check_fits_in_memory
from cllnn_edge.errors import ConfigError
from runtime.checks.tolerances import DEFAULT_TOLERANCES, ToleranceConfig


def test_defaults_are_the_seeds_hyperparameters() -> None:
    cfg = Config()
    assert cfg.model == ModelConfig(
        reservoir_dim=512,
        spectral_radius=0.9,
        leak_rate=0.2,
        lstm_units=128,
        conv_filters=(32, 64, 128),
        output_dim=10,
        sequence_length=1,
        seed=0,
    )
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.learning_rate) == (10, 64, 1e-3)
    assert (cfg.train.validation_fraction, cfg.train.split_seed) == (0.1, 42)
    assert (cfg.train.lr_reduce_factor, cfg.train.min_learning_rate) == (0.1, 1e-5)
    assert cfg.model.flat_features == 1152


def test_toml_overrides_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(
        "[model]\nsequence_length = 9\nconv_filters = [8, 16, 32]\nseed = 7\n"
        "[train]\nepochs = 2\nlearning_rate = 0.01\n"
    )
    cfg = Config.from_toml(path)
    assert cfg.model.sequence_length == 9
    assert cfg.model.conv_filters == (8, 16, 32)
    assert cfg.model.step_features == 3 * 3 * 32 // 9
    assert cfg.train.epochs == 2 and cfg.train.learning_rate == 0.01
    assert cfg.train.batch_size == 64  # untouched keys keep their defaults
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("length", [1, 2, 3, 9, 1152])
def test_sequence_lengths_that_divide_the_features_are_accepted(length: int) -> None:
    assert ModelConfig(sequence_length=length).step_features * length == 1152


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("model", {"reservoir_dim": -1}, r"model\.reservoir_dim must be > 0"),
        ("model", {"lstm_units": 0}, r"model\.lstm_units must be > 0"),
        ("model", {"leak_rate": 0.0}, r"model\.leak_rate must be in \(0, 1\]"),
        ("model", {"leak_rate": 1.5}, r"model\.leak_rate must be in \(0, 1\]"),
        ("model", {"spectral_radius": 0.0}, r"model\.spectral_radius must be > 0"),
        ("model", {"spectral_radius": -0.9}, r"model\.spectral_radius must be > 0"),
        ("model", {"sequence_length": 5}, r"model\.sequence_length must divide the 1152"),
        ("model", {"sequence_length": 0}, r"model\.sequence_length must be > 0"),
        ("model", {"conv_filters": []}, r"model\.conv_filters"),
        ("model", {"conv_filters": [32, -64, 128]}, r"model\.conv_filters"),
        ("model", {"conv_filters": [8, 8, 8, 8, 8]}, r"a 28x28 image allows at most 4"),
        ("model", {"image_shape": [8, 8, 1], "conv_filters": [8, 8, 8, 8]}, r"a 8x8 image allows at most 3"),
        ("model", {"image_shape": [28, 28, 2]}, r"1 \(grey\) or 3 \(RGB\) channels, got 2"),
        ("model", {"image_shape": [28, 28]}, r"model\.image_shape must be \[height, width, channels\]"),
        ("model", {"output_dim": 1}, r"model\.output_dim must be >= 2 classes"),
        ("model", {"reservoir_dim": 5.5}, r"model\.reservoir_dim must be an integer"),
        ("model", {"seed": True}, r"model\.seed must be an integer"),
        ("model", {"hidden": 3}, r"unknown key\(s\) in \[model\]: \['hidden'\]"),
        ("train", {"epochs": 0}, r"train\.epochs must be > 0"),
        ("train", {"batch_size": -64}, r"train\.batch_size must be > 0"),
        ("train", {"learning_rate": 0}, r"train\.learning_rate must be > 0"),
        ("train", {"validation_fraction": 1.0}, r"train\.validation_fraction must be in \(0, 1\)"),
        ("train", {"learning_rate": float("nan")}, r"train\.learning_rate must be a finite"),
        ("train", {"min_learning_rate": 0.1}, r"must not exceed"),
        ("train", {"epoch": 3}, r"unknown key\(s\) in \[train\]: \['epoch'\]"),
        ("export", {"calibration_size": 0}, r"export\.calibration_size must be > 0"),
        ("export", {"formats": []}, r"export\.formats must be a non-empty list"),
        ("export", {"onnx_opset": 21}, r"export\.onnx_opset must be in 13\.\.18"),
        ("export", {"onnx_per_channel": "yes"}, r"export\.onnx_per_channel must be true or false"),
    ],
)
def test_invalid_values_name_the_field(section: str, values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({section: values})


def test_unknown_section_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"unknown configuration section\(s\) \['modle'\]"):
        Config.from_dict({"modle": {}})


def test_toml_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="config file not found: .*absent.toml"):
        Config.from_toml(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("[model\nseed = 1\n")
    with pytest.raises(ConfigError, match="broken.toml is not valid TOML"):
        Config.from_toml(broken)
    invalid = tmp_path / "invalid.toml"
    invalid.write_text("[model]\nleak_rate = 2.0\n")
    with pytest.raises(ConfigError, match=r"invalid.toml: model\.leak_rate"):
        Config.from_toml(invalid)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        TrainConfig(epochs=-1)


def test_replace_validates_again() -> None:
    cfg = Config().replace("train", epochs=3)
    assert cfg.train.epochs == 3 and cfg.model == ModelConfig()
    with pytest.raises(ConfigError, match="train.epochs"):
        Config().replace("train", epochs=0)


# -- the tolerance table as a config section (the table itself: tests/runtime/test_tolerances.py) --
def test_a_toml_tolerance_row_changes_only_the_limits_it_names(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text("[tolerances.int8]\nmin_top1 = 0.9\n")
    table = Config.from_toml(path).tolerances
    assert table["int8"].min_top1 == 0.9
    assert table["int8"].max_accuracy_drop == DEFAULT_TOLERANCES["int8"].max_accuracy_drop
    assert table["dynamic-int8"] == DEFAULT_TOLERANCES["dynamic-int8"]


def test_the_tolerance_table_round_trips_through_the_config_dict() -> None:
    table = ToleranceConfig().with_limits("float16", max_abs=0.02)
    again = Config.from_dict(Config().replace("tolerances", rows=table.rows).to_dict()).tolerances
    assert again == table and again["float16"].max_abs == 0.02


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tolerances]\nquantized_min_top1 = 0.99\n", r"one table per precision .*\[tolerances\.int8\]"),
        ("[tolerances.int4]\nmin_top1 = 0.9\n", r"unknown key 'int4' in \[tolerances\]"),
        ("[tolerances.int8]\nmin_top_1 = 0.9\n", r"unknown tolerance\(s\) \['min_top_1'\] for int8"),
        ("[tolerances.int8]\nmin_top1 = 1.2\n", r"cfg\.toml: \[tolerances\.int8\]: .*min_top1 must be >= 0"),
        ("[tolerances.float32]\nmax_abs = 'small'\n", r"max_abs must be a finite number"),
    ],
)
def test_bad_tolerance_rows_are_config_errors_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Config.from_toml(path)


def test_a_model_past_the_weight_limit_is_refused_at_load_naming_the_limit(tmp_path: Path) -> None:
    config = tmp_path / "big.toml"
    config.write_text(f"[model]\nreservoir_dim = {2**40}\n")
    with pytest.raises(ConfigError, match=r"big.toml: model is too large: reservoir_dim 1099511627776.*"
                                          r"the limit is 2.00 GiB \(the most a TFLite FlatBuffer"):
        Config.from_toml(config)
    assert ModelConfig(reservoir_dim=16_000).weight_bytes <= MAX_WEIGHT_BYTES  # a large model still loads


@pytest.mark.parametrize("values", [{}, {"conv_filters": (4, 8, 16), "reservoir_dim": 32, "lstm_units": 8,
                                        "sequence_length": 3},
                                    {"conv_filters": (4, 8), "reservoir_dim": 16, "lstm_units": 4,
                                     "image_shape": (12, 20, 3), "output_dim": 5}])
def test_weight_count_is_what_keras_counts(values: dict) -> None:
    from cllnn_edge.model import build_model

    cfg = ModelConfig(**values)
    assert cfg.weight_count == build_model(cfg).count_params()


def test_a_model_that_does_not_fit_in_memory_is_refused_naming_both_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    import cllnn_edge.config as config

    monkeypatch.setattr(config, "available_memory_bytes", lambda: 1024**3)
    check_fits_in_memory(ModelConfig())  # ~5 MB of weights
    with pytest.raises(ConfigError, match=r"too large for this machine: .* \(1.74 GiB\), and 1.00 GiB of memory"):
        check_fits_in_memory(ModelConfig(reservoir_dim=10_000))


def test_the_model_takes_its_input_and_classes_from_the_data() -> None:
    seed = ModelConfig()
    assert seed.for_data((28, 28, 1), 10) == seed  # MNIST leaves the seed's model as it is
    digits = seed.for_data((8, 8, 1), 10)
    assert (digits.image_shape, digits.conv_filters, digits.flat_features) == ((8, 8, 1), (32, 64, 128), 128)
    small = seed.for_data((5, 40, 3), 5)  # the short side allows 2 stages: 5 -> 2 -> 1
    assert (small.image_shape, small.output_dim, small.conv_filters, small.cnn_shape) == (
        (5, 40, 3), 5, (32, 64), (1, 10))

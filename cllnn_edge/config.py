"""Typed configuration: model and training hyperparameters, loadable from TOML.

Defaults are the seed's (``shared/seed/CLLNN.md``). Every value is validated
when the dataclass is built, so a bad TOML file fails before any training and
the error names the offending field (the checks of single values are
``cllnn_edge.config_values``). ``to_dict`` output is echoed into every report
and manifest.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from cllnn_edge.config_values import (
    calibration_table,
    checked_image_shape,
    gib,
    require_int,
    require_number,
    require_positive_int,
)
from cllnn_edge.config_sections import TargetConfig, TrainConfig
from cllnn_edge.errors import ConfigError
from runtime.errors import ToleranceError
from runtime.checks.tolerances import ToleranceConfig

IMAGE_SIDE = 28  # MNIST's, the default image shape's side
MNIST_IMAGE_SHAPE = (IMAGE_SIDE, IMAGE_SIDE, 1)
# Channels an image may have: grey or RGB (runtime.backends.images takes the same).
CHANNELS = (1, 3)
# The graph variants int8 formats can be built from (``ExportConfig.int8_graph``, export.graph.unroll).
FLOAT_FRONT, BOUNDED, PLAIN = "float-front", "bounded", "plain"
INT8_GRAPHS = (FLOAT_FRONT, BOUNDED, PLAIN)
# The largest model a config may describe: 2 GiB of float32 weights, the limit of the files it
# exports to (a TFLite FlatBuffer and an ONNX protobuf without external data hold at most 2 GiB).
MAX_WEIGHT_BYTES = 2 * 1024**3
# Training holds each weight about four times (the weight, its gradient, Adam's two moments).
TRAINING_COPIES = 4

_T = TypeVar("_T")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the CLLNN: Conv/Pool stack -> reservoir RNN -> LSTM -> softmax."""

    SECTION: ClassVar[str] = "model"

    reservoir_dim: int = 512
    spectral_radius: float = 0.9
    leak_rate: float = 0.2
    lstm_units: int = 128
    conv_filters: tuple[int, ...] = (32, 64, 128)
    output_dim: int = 10
    sequence_length: int = 1
    seed: int = 0
    # (height, width, channels) of the raw images the model takes; training sets it (with
    # output_dim) from the data (``for_data``), so a config file rarely names it.
    image_shape: tuple[int, ...] = MNIST_IMAGE_SHAPE

    def __post_init__(self) -> None:
        for name in ("reservoir_dim", "lstm_units", "output_dim", "sequence_length"):
            require_positive_int(self, name)
        if self.output_dim < 2:
            raise ConfigError(f"model.output_dim must be >= 2 classes, got {self.output_dim}")
        object.__setattr__(self, "image_shape", checked_image_shape(self.image_shape, CHANNELS))
        require_int(self, "seed")
        if self.seed < 0:
            raise ConfigError(f"model.seed must be >= 0, got {self.seed}")
        filters = self.conv_filters
        if isinstance(filters, list):
            object.__setattr__(self, "conv_filters", tuple(filters))
            filters = self.conv_filters
        if not isinstance(filters, tuple) or not filters:
            raise ConfigError(
                f"model.conv_filters must be a non-empty list of positive integers, got {filters!r}"
            )
        for value in filters:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(
                    f"model.conv_filters must hold positive integers, got {filters!r}"
                )
        allowed = conv_stages_allowed(self.image_shape)
        if len(filters) > allowed:
            height, width, _ = self.image_shape
            raise ConfigError(
                f"model.conv_filters has {len(filters)} conv/pool stages; a {height}x{width} image "
                f"allows at most {allowed} (each 2x2 pool halves the side)"
            )
        require_number(self, "spectral_radius")
        if not self.spectral_radius > 0:
            raise ConfigError(f"model.spectral_radius must be > 0, got {self.spectral_radius}")
        require_number(self, "leak_rate")
        if not 0 < self.leak_rate <= 1:
            raise ConfigError(f"model.leak_rate must be in (0, 1], got {self.leak_rate}")
        if self.flat_features % self.sequence_length:
            divisors = [d for d in range(1, self.flat_features + 1) if self.flat_features % d == 0]
            raise ConfigError(
                f"model.sequence_length must divide the {self.flat_features} flattened CNN "
                f"features, got {self.sequence_length}; valid values: {divisors}"
            )
        if self.weight_bytes > MAX_WEIGHT_BYTES:
            raise ConfigError(
                f"model is too large: reservoir_dim {self.reservoir_dim}, lstm_units {self.lstm_units} and "
                f"conv_filters {list(filters)} make {gib(self.weight_bytes)} of float32 weights; the limit is "
                f"{gib(MAX_WEIGHT_BYTES)} (the most a TFLite FlatBuffer or an ONNX protobuf holds)"
            )

    @property
    def cnn_shape(self) -> tuple[int, int]:
        """Height and width of the feature map after the conv/pool stack (28 -> 14 -> 7 -> 3)."""
        height, width, _ = self.image_shape
        return height >> len(self.conv_filters), width >> len(self.conv_filters)

    @property
    def flat_features(self) -> int:
        """Length of the flattened CNN output (1152 with the defaults)."""
        height, width = self.cnn_shape
        return height * width * self.conv_filters[-1]

    def for_data(self, image_shape: tuple[int, int, int], classes: int) -> ModelConfig:
        """This architecture for images of ``image_shape`` (H, W, C) in ``classes`` classes: the
        input and output follow the data, and conv/pool stages the image is too small for are
        dropped from the end (an 8x8 image keeps 3, a 4x4 one 2)."""
        filters = self.conv_filters[: max(conv_stages_allowed(image_shape), 1)]
        return dataclasses.replace(self, image_shape=tuple(image_shape), output_dim=classes, conv_filters=filters)

    @property
    def step_features(self) -> int:
        """Features fed to the reservoir at each of the ``sequence_length`` steps."""
        return self.flat_features // self.sequence_length

    @property
    def weight_count(self) -> int:
        """Weights of the model this config builds (cllnn_edge.model): the standardiser's
        per-column statistics, convolutions, the reservoir's W_in and W_res, the LSTM and the
        softmax head, biases included (``keras.Model.count_params``; a test checks)."""
        _, width, channels = self.image_shape
        convs = 2 * width * channels
        for filters in self.conv_filters:
            convs += 9 * channels * filters + filters
            channels = filters
        r, u = self.reservoir_dim, self.lstm_units
        reservoir = self.step_features * r + r * r
        lstm = 4 * u * (r + u + 1)
        return convs + reservoir + lstm + u * self.output_dim + self.output_dim

    @property
    def weight_bytes(self) -> int:
        return 4 * self.weight_count


@dataclass(frozen=True)
class ExportConfig:
    """How ``cllnn-export convert`` builds and checks the deployable files."""

    SECTION: ClassVar[str] = "export"

    # Names from the format registry (export.formats.registry), or ["all"]; checked where they are used.
    formats: tuple[str, ...] = ("all",)
    # Training images for int8 calibration. Calibration keeps each tensor's min / max,
    # so more images widen ranges with rare outliers: 200 gave the best top-1
    # agreement of 100 .. 3000 tried (T = 1 and T = 3, see export.graph.unroll).
    calibration_size: int = 200
    check_size: int = 1000  # test images for the export-time checks
    # Test images (the split parity uses) kept beside the artefacts with their labels and
    # the trained model's outputs, so a device checks its files without TensorFlow
    # (check_set.npz, ``cllnn-bench verify``). 300 keep the file small (1.8 MB at the
    # seed's size, mostly the CNN features) while a top-1 floor of 0.99 still allows
    # 3 disagreements.
    check_set_size: int = 300
    onnx_opset: int = 18
    onnx_per_channel: bool = True
    # The graph int8 formats are built from (INT8_GRAPHS, see export.graph.unroll):
    # "float-front" keeps the standardiser, conv1 and pool1 in float32 inside the
    # int8 files (exact there, and the fastest int8 graph on both CPU classes
    # measured); "bounded" is integer-only (for integer-only targets), "plain" the
    # float graph quantized as it is (fails the top-1 check at T = 3).
    int8_graph: str = FLOAT_FRONT
    # Formats converted at once, each in its own process (a converter is mostly
    # single-threaded); 0: one per usable CPU core. Does not change the files.
    workers: int = 0
    # Precision per stage (cnn, reservoir, lstm, head: float32, int16x8 or int8) of the
    # "-mixed" formats; unnamed stages are int8. Checked where used (export.formats.precision). The
    # default kept the demo model's top-1 class on all 1,000 test images, max abs 0.046, at
    # int8 size; an int8 CNN or reservoir through AI Edge Quantizer lost 3 to 8 of them
    # (benchmarks/PRECISION.md).
    recipe: dict[str, str] = field(default_factory=lambda: {"cnn": "int16x8", "reservoir": "int16x8"})
    # Per format: {method = "minmax" | "moving-average" | "entropy" | ..., images = N}, over the
    # format's defaults (export.formats.registry.calibration_for, which checks the method).
    calibration: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The microcontroller budget the TFLM formats must fit (runtime.deploy.boards, checked there): a named
    # board, and / or flash and RAM in KiB, which replace the board's figures (0: not given).
    board: str = ""
    flash_kib: int = 0
    ram_kib: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.formats, list):
            object.__setattr__(self, "formats", tuple(self.formats))
        if not isinstance(self.formats, tuple) or not self.formats or not all(
            isinstance(f, str) and f for f in self.formats
        ):
            raise ConfigError(f"export.formats must be a non-empty list of names, got {self.formats!r}")
        for name in ("calibration_size", "check_size", "check_set_size"):
            require_positive_int(self, name)
        require_int(self, "workers")
        for name in ("flash_kib", "ram_kib"):
            require_int(self, name)
            if getattr(self, name) < 0:
                raise ConfigError(f"export.{name} must be >= 0 (0: not limited), got {getattr(self, name)}")
        if not isinstance(self.board, str):
            raise ConfigError(f"export.board must be a board's name, got {self.board!r}")
        if self.workers < 0:
            raise ConfigError(f"export.workers must be >= 0 (0: one per CPU core), got {self.workers}")
        require_int(self, "onnx_opset")
        if not 13 <= self.onnx_opset <= 18:
            raise ConfigError(f"export.onnx_opset must be in 13..18 (tf2onnx 1.17), got {self.onnx_opset}")
        if not isinstance(self.onnx_per_channel, bool):
            raise ConfigError(f"export.onnx_per_channel must be true or false, got {self.onnx_per_channel!r}")
        if self.int8_graph not in INT8_GRAPHS:
            raise ConfigError(f"export.int8_graph must be one of {', '.join(INT8_GRAPHS)}, got {self.int8_graph!r}")
        if not isinstance(self.recipe, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.recipe.items()
        ):
            raise ConfigError(f"export.recipe must be a table of stage = \"precision\", got {self.recipe!r}")
        object.__setattr__(self, "recipe", dict(self.recipe))
        if not isinstance(self.calibration, Mapping):
            raise ConfigError(f"export.calibration must be a table of [export.calibration.<format>], "
                              f"got {self.calibration!r}")
        object.__setattr__(self, "calibration", {name: calibration_table(name, table)
                                                 for name, table in self.calibration.items()})


@dataclass(frozen=True)
class Config:
    """The whole configuration; one TOML table per section."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    tolerances: ToleranceConfig = field(default_factory=ToleranceConfig)
    target: TargetConfig = field(default_factory=TargetConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain JSON-ready dict (tuples become lists)."""
        return {section.name: _section_to_dict(getattr(self, section.name))
                for section in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Build from nested dicts; unknown sections or keys are errors, missing ones default."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"configuration must be a table of sections, got {type(data).__name__}")
        sections = _section_types()
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ConfigError(
                f"unknown configuration section(s) {unknown}; known: {sorted(sections)}"
            )
        built = {}
        for name, section_type in sections.items():
            built[name] = _section_from_dict(section_type, name, data.get(name, {}))
        return cls(**built)

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        """Load a TOML file; a missing file or bad syntax is a ConfigError naming the file."""
        path = Path(path)
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    def replace(self, section: str, **changes: Any) -> Config:
        """A copy with some fields of one section changed (validated again)."""
        current = getattr(self, section)
        return dataclasses.replace(self, **{section: dataclasses.replace(current, **changes)})


def check_fits_in_memory(model: ModelConfig) -> None:
    """Refuse, before any work, a model whose training would not fit in this machine's available
    memory (``MemAvailable`` of /proc/meminfo; unchecked where that is not available)."""
    available = available_memory_bytes()
    needed = TRAINING_COPIES * model.weight_bytes
    if available is not None and needed > available:
        raise ConfigError(
            f"model is too large for this machine: training holds its {gib(model.weight_bytes)} of float32 "
            f"weights about {TRAINING_COPIES} times ({gib(needed)}), and {gib(available)} of memory is "
            f"available; reduce model.reservoir_dim ({model.reservoir_dim}) or model.lstm_units "
            f"({model.lstm_units})"
        )


def available_memory_bytes() -> int | None:
    """The memory available to a new process (Linux ``MemAvailable``), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def conv_stages_allowed(image_shape: tuple[int, ...]) -> int:
    """The most conv/pool stages an image of ``image_shape`` (H, W, C) allows: each 2x2 pool
    floors the side's half, and a side must stay >= 1 (28 allows 4, 8 allows 3)."""
    return min(image_shape[:2]).bit_length() - 1


def _section_types() -> dict[str, type]:
    """Section name -> its dataclass, in the order of ``Config``'s fields."""
    return {
        "model": ModelConfig,
        "train": TrainConfig,
        "export": ExportConfig,
        "tolerances": ToleranceConfig,
        "target": TargetConfig,
    }


def _section_to_dict(section: Any) -> dict[str, Any]:
    if isinstance(section, ToleranceConfig):
        return section.to_dict()
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(section).items()}


def _section_from_dict(section_type: type[_T], name: str, values: Any) -> _T:
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{name}] must be a table, got {type(values).__name__}")
    if section_type is ToleranceConfig:
        try:
            return ToleranceConfig.from_dict(values)  # type: ignore[return-value]
        except ToleranceError as exc:  # the table lives in runtime, which has its own errors
            raise ConfigError(str(exc)) from exc
    known = {f.name for f in dataclasses.fields(section_type)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in [{name}]: {unknown}; known: {sorted(known)}")
    return section_type(**values)

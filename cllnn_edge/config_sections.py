"""The smaller sections of ``cllnn_edge.config``: ``[train]`` and ``[target]``, apart so that
``config.py`` stays the list of the larger ones and how a ``Config`` is read (``Config`` imports these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cllnn_edge.config_values import require_int, require_number, require_positive_int
from cllnn_edge.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters; the learning-rate schedule follows the seed's log
    (1e-3 -> 1e-4 -> 1e-5 when validation loss stops improving)."""

    SECTION: ClassVar[str] = "train"

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    validation_fraction: float = 0.1
    split_seed: int = 42
    lr_reduce_factor: float = 0.1
    lr_reduce_patience: int = 2
    min_learning_rate: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            require_positive_int(self, name)
        require_int(self, "split_seed")
        require_int(self, "lr_reduce_patience")
        if self.lr_reduce_patience < 0:
            raise ConfigError(
                f"train.lr_reduce_patience must be >= 0, got {self.lr_reduce_patience}"
            )
        for name in ("learning_rate", "min_learning_rate"):
            require_number(self, name)
            if not getattr(self, name) > 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")
        for name in ("validation_fraction", "lr_reduce_factor"):
            require_number(self, name)
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be in (0, 1), got {getattr(self, name)}")
        if self.min_learning_rate > self.learning_rate:
            raise ConfigError(
                f"train.min_learning_rate ({self.min_learning_rate}) must not exceed "
                f"train.learning_rate ({self.learning_rate})"
            )


@dataclass(frozen=True)
class TargetConfig:
    """The device the files ship to, as ``convert`` and ``run`` should make them for it."""

    SECTION: ClassVar[str] = "target"

    # The runtime release the device runs, a pip requirement pinned with == ("tflite-runtime==2.14",
    # "ai-edge-litert==1.4.0", "onnxruntime==1.20.1"): convert then makes files that load on it, or says
    # which formats cannot. "" (the default): the runtimes this machine has. Parsed into the plan
    # (``export.targets.runtime_pin.RuntimePin``), where a bad one fails before any work.
    runtime: str = ""
    # The formats whose files a device verifies, times and chooses from (``run --target``; the flag is
    # ``--target-formats``), names as the run's manifest records them, or ["all"]. Checked in the plan,
    # against the formats the run exports; the device's own check is against the manifest.
    formats: tuple[str, ...] = ("all",)

    def __post_init__(self) -> None:
        if not isinstance(self.runtime, str):
            raise ConfigError(f"target.runtime must be a string such as \"tflite-runtime==2.14\", got {self.runtime!r}")
        if isinstance(self.formats, list):
            object.__setattr__(self, "formats", tuple(self.formats))
        if not isinstance(self.formats, tuple) or not self.formats or not all(
                isinstance(name, str) and name for name in self.formats):
            raise ConfigError(f"target.formats must be a non-empty list of format names (or [\"all\"]), "
                              f"got {self.formats!r}")

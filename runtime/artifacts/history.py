"""The training history beside a trained model (``train/history.json``), as a typed record.

``cllnn_edge.train`` writes it; the run's report reads it. It lives here, in the bottom layer, beside
the manifest's records, so that anything reading a run directory (a device has none, but the report
and the benchmarks do) reads one layout through one reader. The layout may grow, never break:
``from_dict`` reads what it knows, keeps the rest in ``extra`` and ``to_dict`` writes both back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FinalMetrics:
    """The trained model's figures after the last epoch."""

    val_accuracy: float
    test_accuracy: float
    test_loss: float | None = None


@dataclass(frozen=True)
class TrainingTiming:
    train_seconds: float
    median_step_ms: float
    steps_per_epoch: int = 0


_KNOWN = ("epochs", "final", "timing", "trainable_params", "config", "data", "versions")


@dataclass(frozen=True)
class TrainingHistory:
    """What training recorded: per-epoch curves, the final figures, timing, size, config, data, versions."""

    epochs: dict[str, list[float]]  # metric -> one value per epoch (loss, accuracy, val_loss, ...)
    final: FinalMetrics
    timing: TrainingTiming
    trainable_params: int
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. "distribution", and keys a later version adds

    @property
    def epoch_count(self) -> int:
        return len(self.epochs.get("loss", ()))

    def to_dict(self) -> dict[str, Any]:
        final = {k: v for k, v in asdict(self.final).items() if v is not None}
        return {"epochs": self.epochs, "final": final, "timing": asdict(self.timing),
                "trainable_params": self.trainable_params, "config": self.config, "data": self.data,
                "versions": self.versions, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingHistory:
        final, timing = data["final"], data["timing"]
        return cls(
            epochs={str(k): list(v) for k, v in data["epochs"].items()},
            final=FinalMetrics(float(final["val_accuracy"]), float(final["test_accuracy"]),
                               None if final.get("test_loss") is None else float(final["test_loss"])),
            timing=TrainingTiming(float(timing["train_seconds"]), float(timing["median_step_ms"]),
                                  int(timing.get("steps_per_epoch", 0))),
            trainable_params=int(data["trainable_params"]),
            config=dict(data.get("config", {})),
            data=dict(data.get("data", {})),
            versions=dict(data.get("versions", {})),
            extra={k: v for k, v in data.items() if k not in _KNOWN},
        )

    @classmethod
    def load_json(cls, path: str | Path) -> TrainingHistory:
        """``path``'s history; a file of another shape raises ``ValueError`` naming it and the key."""
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a training history (train/history.json): {exc!r}") from exc

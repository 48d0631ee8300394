"""Training writes a model that reloads and predicts identically, and writes it atomically."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from cllnn_edge.config import Config, ModelConfig, TrainConfig
from cllnn_edge.data import Split, Splits, load_splits
from cllnn_edge.distribute import ONE_DEVICE, plan
from cllnn_edge.errors import ConfigError
from cllnn_edge.model import STANDARDIZE, load_trained
from cllnn_edge.preprocessing import StandardizerStats
from cllnn_edge.train import (
    HISTORY_FILE,
    MODEL_FILE,
    PREPROCESSING_FILE,
    as_model_input,
    save_training,
    train,
)

TINY = Config(
    model=ModelConfig(conv_filters=(4, 8, 8), reservoir_dim=32, lstm_units=8, sequence_length=3),
    train=TrainConfig(epochs=2, batch_size=32),
)


def _subset(split: Split, count: int) -> Split:
    return Split(split.x[:count], split.y[:count])


@pytest.fixture(scope="module")
def small_splits() -> Splits:
    full = load_splits("embedded")
    return Splits(
        train=_subset(full.train, 320),
        val=_subset(full.val, 64),
        test=_subset(full.test, 64),
        source="embedded (subset)",
    )


@pytest.fixture(scope="module")
def trained(small_splits: Splits, tmp_path_factory: pytest.TempPathFactory):
    return train(TINY, small_splits, tmp_path_factory.mktemp("run"), verbose=0)


def test_writes_model_history_and_statistics(trained) -> None:
    names = sorted(p.name for p in trained.out_dir.iterdir())
    assert names == sorted([MODEL_FILE, HISTORY_FILE, PREPROCESSING_FILE])
    history = json.loads((trained.out_dir / HISTORY_FILE).read_text())
    assert len(history["epochs"]["loss"]) == 2
    assert set(history["epochs"]) >= {"accuracy", "val_accuracy", "val_loss", "learning_rate"}
    assert history["config"] == TINY.to_dict()
    assert history["data"]["train"] == 320
    assert 0.0 <= history["final"]["test_accuracy"] <= 1.0
    assert history["timing"]["steps_per_epoch"] == 10
    assert history["versions"]["keras"] == keras.__version__


def test_model_reloads_and_predicts_identically(trained, small_splits: Splits) -> None:
    reloaded = load_trained(trained.model_path)
    x = as_model_input(small_splits.test)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), trained.model.predict(x, verbose=0))


def test_statistics_file_matches_the_weights_inside_the_model(trained) -> None:
    stats = StandardizerStats.load(trained.out_dir / PREPROCESSING_FILE)
    layer = load_trained(trained.model_path).get_layer(STANDARDIZE)
    np.testing.assert_allclose(layer.mean.numpy(), stats.mean.astype(np.float32))
    np.testing.assert_allclose(layer.scale.numpy(), stats.scale.astype(np.float32))
    assert stats.samples == 320


def test_learning_rate_drops_on_a_plateau(small_splits: Splits, tmp_path: Path) -> None:
    cfg = TINY.replace("train", epochs=4, lr_reduce_patience=0, learning_rate=1e-3)
    result = train(cfg, small_splits, tmp_path, verbose=0)
    rates = result.history["epochs"]["learning_rate"]
    assert rates[0] == pytest.approx(1e-3)
    assert all(b <= a for a, b in zip(rates, rates[1:]))
    assert min(rates) >= cfg.train.min_learning_rate


def test_a_failed_save_leaves_the_previous_run_intact(trained, tmp_path: Path) -> None:
    for name in (MODEL_FILE, HISTORY_FILE, PREPROCESSING_FILE):
        (tmp_path / name).write_text("previous run")
    unserialisable = {"bad": object()}  # json.dumps raises TypeError half-way through
    with pytest.raises(TypeError):
        save_training(tmp_path, trained.model, trained.stats, unserialisable)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [MODEL_FILE, HISTORY_FILE, PREPROCESSING_FILE]
    )
    assert all((tmp_path / n).read_text() == "previous run" for n in (MODEL_FILE, HISTORY_FILE))


def test_a_resolved_plan_is_used_as_given(small_splits: Splits, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that planned the strategy (the CLI) passes its ``Plan``: ``TF_CONFIG`` is not read
    again, so a value that would fail a second reading does not matter; a name is planned here."""
    resolved = plan(ONE_DEVICE, {})
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        train(TINY, small_splits, tmp_path / "named", verbose=0, strategy=ONE_DEVICE)
    assert not (tmp_path / "named").exists()
    result = train(TINY.replace("train", epochs=1), small_splits, tmp_path / "planned", verbose=0, strategy=resolved)
    assert len(result.history["epochs"]["loss"]) == 1 and "distribution" not in result.history
    assert result.model_path.is_file()

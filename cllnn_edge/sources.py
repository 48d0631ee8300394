"""A ``--data SOURCE`` resolved for its user: in-memory splits (``cllnn_edge.data``) or, for a
shard directory, the stream training reads (``cllnn_edge.shards``) and the first images export
and parity hold. The shard reader, which needs TensorFlow, is imported only for a shard directory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cllnn_edge.config import Config
from cllnn_edge.data import Splits, is_shard_dir, load_splits

if TYPE_CHECKING:
    from cllnn_edge.shards import ShardedData

HEAD_IMAGES = 1000  # images per split export and parity hold in memory, at least (check_size, wide calibration)


def splits_for(cfg: Config, source: str) -> Splits:
    """``load_splits`` with the validation fraction and split seed of ``cfg.train``; for a shard
    directory, the first images of each split that export and parity use."""
    if is_shard_dir(source):
        return with_images_of(sharded_for(cfg, source), cfg)
    return load_splits(source, validation_fraction=cfg.train.validation_fraction, split_seed=cfg.train.split_seed)


def data_for(cfg: Config, source: str) -> Splits | ShardedData:
    """What training reads: ``splits_for``, except that a shard directory stays on disk, read
    through ``tf.data`` (``ShardedData``) and never loaded whole."""
    if is_shard_dir(source):
        return sharded_for(cfg, source)
    return splits_for(cfg, source)


def sharded_for(cfg: Config, source: str) -> ShardedData:
    """``ShardedData`` with the validation fraction and split seed of ``cfg.train``."""
    from cllnn_edge.shards import ShardedData

    return ShardedData(source, validation_fraction=cfg.train.validation_fraction, split_seed=cfg.train.split_seed)


def head_size(cfg: Config) -> int:
    """Images per split export and parity need in memory: calibration, checks, the check set."""
    calibration = [int(t.get("images", 0)) for t in cfg.export.calibration.values()]
    return max(HEAD_IMAGES, cfg.export.calibration_size, cfg.export.check_size, cfg.export.check_set_size,
               *calibration)


def with_images_of(data: Splits | ShardedData, cfg: Config) -> Splits:
    """In-memory splits as export and parity take them: ``data`` itself, or a shard set's head."""
    return data if isinstance(data, Splits) else data.head(head_size(cfg))

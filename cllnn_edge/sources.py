"""A ``--data SOURCE`` resolved for its user: in-memory splits (``cllnn_edge.data``) or, for a
shard directory, the stream training reads (``cllnn_edge.shards``) and the first images export
and parity hold. The shard reader, which needs TensorFlow, is imported only for a shard directory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cllnn_edge.config import Config
from cllnn_edge.data import Splits, is_shard_dir, load_splits

if TYPE_CHECKING:
    from cllnn_edge.shards import ShardedData


def splits_for(cfg: Config, source: str) -> Splits:
    """``load_splits`` with the validation fraction and split seed of ``cfg.train``; for a shard
    directory, the first images of each split that export and parity use."""
    if is_shard_dir(source):
        from cllnn_edge.shards import sharded_for, with_images_of

        return with_images_of(sharded_for(cfg, source), cfg)
    return load_splits(source, validation_fraction=cfg.train.validation_fraction, split_seed=cfg.train.split_seed)


def data_for(cfg: Config, source: str) -> Splits | ShardedData:
    """What training reads: ``splits_for``, except that a shard directory stays on disk, read
    through ``tf.data`` (``ShardedData``) and never loaded whole."""
    if is_shard_dir(source):
        from cllnn_edge.shards import sharded_for

        return sharded_for(cfg, source)
    return splits_for(cfg, source)

"""Sharded data: a directory of TFRecord files read through ``tf.data``, never loaded whole.

A data set too large for memory (or one shared by the workers of a cluster) lives in a
directory like this::

    shards.json                          what the reader checks before it reads a record
    train-00000-of-00008.tfrecord        ... train-00007-of-00008.tfrecord
    val-00000-of-00001.tfrecord          optional: else validation is drawn from train
    test-00000-of-00002.tfrecord         test-00001-of-00002.tfrecord

Each record is a serialised ``tf.train.Example`` with two features:

- ``image``: one bytes value, the raw uint8 pixels in row-major (H, W, C) order,
  exactly H * W * C bytes (C = 1 grey or 3 RGB);
- ``label``: one int64 value, the class index 0..K-1.

``shards.json`` (written last by ``cllnn_edge.shard_writer.write_shards``)::

    {"format": "cllnn-edge-shards", "version": 1, "image_shape": [H, W, C], "classes": K,
     "splits": {"train": {"records": N, "files": {"train-00000-of-00008.tfrecord": n0, ...}},
                "test": {...}, "val": {...}}}

``train`` and ``test`` are required, ``val`` optional. Without ``val`` shards, a training
record belongs to validation when a keyed hash (SipHash, ``tf.strings.to_hash_bucket_strong``
keyed by the split seed) of its serialised bytes falls below the validation fraction: the same
records in every pass and on every worker, and identical images always on the same side.

``ShardedData`` reads such a directory: its summary, a fingerprint hashed from the files'
bytes, the standardiser's statistics in one streaming pass (``ColumnMoments``), batched
``tf.data`` pipelines (file names + ``interleave``; a multi-worker strategy shards them by
DATA, ``cllnn_edge.tf_distribute.sharded_by_data``) and ``head(n)``: the first ``n`` images
of each split in memory, for export's calibration and check images and for parity. Every bad
directory, file or record raises ``DataError`` naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from cllnn_edge.config import CHANNELS
from cllnn_edge.data import MAX_LABEL, SHARDS_FILE, Split, Splits, checked_fraction
from cllnn_edge.errors import DataError
from cllnn_edge.preprocessing import ColumnMoments, StandardizerStats

FORMAT_NAME = "cllnn-edge-shards"
FORMAT_VERSION = 1
SPLIT_NAMES = ("train", "val", "test")
REQUIRED_SPLITS = ("train", "test")
SHARD_SUFFIX = ".tfrecord"
SHARD_BYTES = 64 * 2**20  # default shard size: big enough to read fast, small enough to spread over workers
SCAN_BATCH = 256  # records parsed at once in the streaming passes (25 MiB of float64 moments at 64x64x3)
SHUFFLE_RECORDS = 1024  # training shuffle buffer, in serialised records (12 MiB of 64x64 RGB images)
VAL_BUCKETS = 1_000_000  # resolution of the validation fraction in the keyed hash
READ_CHUNK = 2**20  # bytes hashed at once by fingerprint()
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
}

def shard_name(split: str, index: int, count: int) -> str:
    """``train-00003-of-00008.tfrecord``: the split, the shard's index and the shard count."""
    return f"{split}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scan:
    """What one streaming pass over every record found."""

    counts: dict[str, int]  # records per split as used: train without the validation records
    stats: StandardizerStats


@dataclass(frozen=True)
class SplitsHead(Splits):
    """The first images of each split of a ``ShardedData``, in memory: a ``Splits`` whose class
    count and summary are the whole data set's (a head may lack a class the data has)."""

    classes: int = 0
    data_summary: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_one_image_shape()  # not the class check: a head may lack a class

    @property
    def num_classes(self) -> int:
        return self.classes

    def summary(self) -> dict:
        """The whole data set's counts (the head's own are ``len(split)``)."""
        return dict(self.data_summary)


class ShardedData:
    """A shard directory (see the module docstring), checked on opening and read in streaming passes."""

    def __init__(self, directory: str | Path, *, validation_fraction: float = 0.1, split_seed: int = 42) -> None:
        self.source = str(directory)
        self.directory = Path(directory).expanduser()
        self.validation_fraction = checked_fraction(validation_fraction)
        self.split_seed = int(split_seed)
        meta = _read_meta(self.directory)
        self.image_shape: tuple[int, int, int] = tuple(meta["image_shape"])  # type: ignore[assignment]
        self.num_classes: int = meta["classes"]
        self.files: dict[str, tuple[Path, ...]] = {
            split: tuple(self.directory / name for name in sorted(meta["splits"][split]["files"]))
            for split in SPLIT_NAMES if split in meta["splits"]}
        self._declared = {split: meta["splits"][split]["files"] for split in self.files}
        self._scan: _Scan | None = None

    @property
    def derived_val(self) -> bool:
        """Validation is drawn from the training shards (there are no ``val-*`` shards)."""
        return "val" not in self.files

    @property
    def record_bytes(self) -> int:
        return math.prod(self.image_shape)

    def summary(self) -> dict:
        """Counts per split, as ``Splits.summary()``: from ``shards.json``, or when validation is
        drawn from the training shards, from the streaming pass (``scan``)."""
        counts = self.scan().counts if self.derived_val else {
            split: sum(self._declared[split].values()) for split in SPLIT_NAMES}
        return {"source": self.source, "train": counts["train"], "val": counts["val"], "test": counts["test"],
                "image_shape": list(self.image_shape), "classes": self.num_classes}

    def fingerprint(self) -> str:
        """SHA-256 of every shard file's name and bytes in a fixed order (and of the validation
        settings, when they choose the validation records), read in chunks, never held."""
        digest = hashlib.sha256()
        for split, paths in self.files.items():
            for path in paths:
                digest.update(f"{split}/{path.name}:{path.stat().st_size}\n".encode())
                with path.open("rb") as stream:
                    while chunk := stream.read(READ_CHUNK):
                        digest.update(chunk)
        if self.derived_val:
            digest.update(f"val:{self.validation_fraction!r}:{self.split_seed}".encode())
        return digest.hexdigest()

    def standardizer_stats(self) -> StandardizerStats:
        """The frozen standardiser's statistics over the training records (not the validation
        ones), from the streaming pass that also checks every record."""
        return self.scan().stats

    def scan(self) -> _Scan:
        """One pass over every record (done once): each checked for its size and label, the
        counts checked against ``shards.json``, the training images summed into ``ColumnMoments``."""
        if self._scan is None:
            moments = ColumnMoments()
            counts = {"train": 0, "val": 0, "test": 0}
            for split, paths in self.files.items():
                for path in paths:
                    found = 0
                    for images, labels, is_val in self._read_file(path, split):
                        found += len(labels)
                        if split != "train":
                            counts[split] += len(labels)
                            continue
                        kept = images[~is_val]
                        if len(kept):
                            moments.add(kept)
                        counts["train"] += len(kept)
                        counts["val"] += int(is_val.sum())
                    if found != self._declared[split][path.name]:
                        raise DataError(f"{path}: {SHARDS_FILE} declares {self._declared[split][path.name]:,} "
                                        f"records, the file holds {found:,}")
            if counts["val"] == 0 or counts["train"] == 0:
                raise DataError(f"{self.directory}: {counts['train']} training and {counts['val']} validation "
                                f"records; both need at least one (validation_fraction {self.validation_fraction})")
            self._scan = _Scan(counts=counts, stats=moments.stats())
        return self._scan

    def _read_file(self, path: Path, split: str) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Batches of (uint8 images (N, H, W, C), int64 labels, is-validation flags) of one file,
        every record checked; TensorFlow's errors (a truncated file, a bad CRC, a record that is
        not an Example of these features) become ``DataError`` naming the file."""
        height, width, channels = self.image_shape
        records = tf.data.TFRecordDataset(str(path)).batch(SCAN_BATCH)
        first = 0
        try:
            for serialized in records:
                parsed = tf.io.parse_example(serialized, FEATURES)
                sizes = tf.strings.length(parsed["image"]).numpy()
                labels = parsed["label"].numpy()
                bad = np.flatnonzero(sizes != self.record_bytes)
                if len(bad):
                    raise DataError(f"{path}: record {first + bad[0]} holds {sizes[bad[0]]} image bytes; "
                                    f"{SHARDS_FILE} says {height}x{width}x{channels} = {self.record_bytes}")
                wrong = np.flatnonzero((labels < 0) | (labels >= self.num_classes))
                if len(wrong):
                    raise DataError(f"{path}: record {first + wrong[0]} has label {labels[wrong[0]]}; "
                                    f"{SHARDS_FILE} says {self.num_classes} classes (labels 0..{self.num_classes - 1})")
                images = tf.io.decode_raw(parsed["image"], tf.uint8).numpy().reshape(-1, height, width, channels)
                is_val = (self._is_val(serialized).numpy() if split == "train" and self.derived_val
                          else np.zeros(len(labels), dtype=bool))
                yield images, labels, is_val
                first += len(labels)
        except tf.errors.OpError as exc:
            raise DataError(f"{path}: cannot read record {first}+ as a TFRecord of tf.train.Example "
                            f"(image bytes, label int64): {exc.message.splitlines()[0]}") from exc

    def _is_val(self, serialized: tf.Tensor) -> tf.Tensor:
        """Which training records are validation ones: a keyed hash of their bytes, so the choice
        is the same in every pass and on every worker whatever order the records come in."""
        buckets = tf.strings.to_hash_bucket_strong(serialized, VAL_BUCKETS, key=[self.split_seed, FORMAT_VERSION])
        return buckets < round(self.validation_fraction * VAL_BUCKETS)

    # --- tf.data pipelines ---

    def _records(self, split: str, *, cycle: int = 4) -> tf.data.Dataset:
        """Serialised records of a split: its files' names, in a fixed order, interleaved through
        ``TFRecordDataset``. The names are
        given as they are (not as ``list_files`` patterns, which would read "[" or "*" in a path)."""
        source = "train" if split == "val" and self.derived_val else split
        files = tf.data.Dataset.from_tensor_slices([str(p) for p in self.files[source]])
        records = files.interleave(tf.data.TFRecordDataset, cycle_length=min(cycle, len(self.files[source])),
                                   num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if source == "train" and self.derived_val:
            want_val = split == "val"
            records = records.filter(lambda r: tf.equal(self._is_val(r), want_val))
        return records

    def _decoded(self, records: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
        """Batches of (float32 (N, H, W, C) raw pixels 0..255, int64 labels), as the model takes them."""
        shape = self.image_shape

        def decode(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            parsed = tf.io.parse_example(serialized, FEATURES)
            pixels = tf.reshape(tf.io.decode_raw(parsed["image"], tf.uint8), (-1, *shape))
            return tf.cast(pixels, tf.float32), parsed["label"]

        return records.batch(batch_size).map(decode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def train_dataset(self, batch_size: int, *, seed: int = 0) -> tf.data.Dataset:
        """Training batches, shuffled through a buffer of ``SHUFFLE_RECORDS`` records (reshuffled each epoch)."""
        records = self._records("train").shuffle(SHUFFLE_RECORDS, seed=seed, reshuffle_each_iteration=True)
        return self._decoded(records, batch_size)

    def val_dataset(self, batch_size: int) -> tf.data.Dataset:
        return self._decoded(self._records("val"), batch_size)

    def test_dataset(self, batch_size: int) -> tf.data.Dataset:
        return self._decoded(self._records("test"), batch_size)

    def head(self, n: int) -> SplitsHead:
        """The first ``n`` images of each split (in file order) in memory, as ``Splits``."""
        splits = {}
        for split in SPLIT_NAMES:
            x, y = [], []
            for pixels, labels in self._decoded(self._records(split, cycle=1).take(n), SCAN_BATCH):
                x.append(pixels.numpy().astype(np.uint8))
                y.append(labels.numpy())
            images = np.concatenate(x) if x else np.zeros((0, *self.image_shape), np.uint8)
            splits[split] = Split(images[..., 0] if self.image_shape[2] == 1 else images,
                                  np.concatenate(y) if y else np.zeros(0, np.int64))
        return SplitsHead(**splits, source=self.source, classes=self.num_classes, data_summary=self.summary())


def _read_meta(directory: Path) -> dict[str, Any]:
    """``shards.json``, checked: format and version, image shape, classes, and per split its
    files (present, named ``<split>-NNNNN-of-NNNNN.tfrecord``, no others) and record counts."""
    if not directory.is_dir():
        raise DataError(f"shard directory {directory}: no such directory")
    meta_path = directory / SHARDS_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError as exc:
        raise DataError(f"{meta_path}: missing; a shard directory is written by "
                        "'cllnn-export shards SOURCE --out DIR' (cllnn_edge.shard_writer.write_shards)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{meta_path}: cannot read as JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DataError(f"{meta_path}: expected \"format\": {FORMAT_NAME!r}, found {found!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise DataError(f"{meta_path}: expected version {FORMAT_VERSION}, found {meta.get('version')!r}")
    shape = meta.get("image_shape")
    if (not isinstance(shape, list) or len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape)
            or shape[2] not in CHANNELS):
        raise DataError(f"{meta_path}: image_shape must be [height, width, channels] with channels in "
                        f"{CHANNELS}, found {shape!r}")
    classes = meta.get("classes")
    if not isinstance(classes, int) or isinstance(classes, bool) or not 2 <= classes <= MAX_LABEL + 1:
        raise DataError(f"{meta_path}: classes must be an integer >= 2, found {classes!r}")
    splits = meta.get("splits")
    if not isinstance(splits, dict):
        raise DataError(f"{meta_path}: expected a \"splits\" table, found {splits!r}")
    for split in (*REQUIRED_SPLITS, *[s for s in splits if s not in REQUIRED_SPLITS]):
        if split not in SPLIT_NAMES:
            raise DataError(f"{meta_path}: unknown split {split!r}; expected {', '.join(SPLIT_NAMES)}")
        _check_split(directory, meta_path, split, splits.get(split))
    return meta


def _check_split(directory: Path, meta_path: Path, split: str, entry: Any) -> None:
    on_disk = sorted(p.name for p in directory.glob(f"{split}-*{SHARD_SUFFIX}"))
    if entry is None:
        raise DataError(f"{meta_path}: no {split} shards listed (train and test are required; "
                        f"found {len(on_disk)} {split}-*{SHARD_SUFFIX} files)")
    files = entry.get("files") if isinstance(entry, dict) else None
    if not isinstance(files, dict) or not files or not all(isinstance(n, int) and n >= 0 for n in files.values()):
        raise DataError(f"{meta_path}: splits.{split}.files must map file names to record counts, found {files!r}")
    if entry.get("records") != sum(files.values()):
        raise DataError(f"{meta_path}: splits.{split}.records is {entry.get('records')!r}, its files hold "
                        f"{sum(files.values())}")
    missing = sorted(set(files) - set(on_disk))
    if missing:
        raise DataError(f"{directory}: {split} shard {missing[0]} listed in {SHARDS_FILE} is missing"
                        + (f" ({len(missing)} files missing)" if len(missing) > 1 else ""))
    extra = sorted(set(on_disk) - set(files))
    if extra:
        raise DataError(f"{directory}: {extra[0]} is not listed in {SHARDS_FILE}; a shard directory "
                        "holds only the files its shards.json lists")

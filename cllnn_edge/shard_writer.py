"""Writing shard directories (the format: ``cllnn_edge.shards``): any in-memory data set as
TFRecord files and a ``shards.json``, staged in a temporary directory and renamed into place."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from cllnn_edge.data import MAX_LABEL, SHARDS_FILE, Split, Splits, is_shard_dir
from cllnn_edge.errors import DataError
from cllnn_edge.shards import FORMAT_NAME, FORMAT_VERSION, REQUIRED_SPLITS, SHARD_BYTES, SPLIT_NAMES, shard_name

Progress = Callable[[str], None]
Arrays = Mapping[str, tuple[np.ndarray, np.ndarray]]  # split name -> (images, labels)


def write_shards(
    data: Splits | Arrays,
    out_dir: str | Path,
    *,
    per_shard: int | None = None,
    progress: Progress = lambda line: None,
) -> Path:
    """Write ``data`` (``Splits``, or ``{"train": (x, y), "test": (x, y)[, "val": (x, y)]}`` with
    uint8 images (N, H, W[, C])) as a shard directory at ``out_dir``; ``per_shard`` records per
    file (default: about 64 MiB per file). Written in a temporary directory beside ``out_dir``
    and renamed into place, so a failure leaves no half-written directory; an existing shard
    directory at ``out_dir`` is replaced."""
    arrays = _arrays_of(data)
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not is_shard_dir(out_dir) and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir}: exists and is not a shard directory (no {SHARDS_FILE}); "
                        "choose a new or empty directory")
    image_shape = Split(*next(iter(arrays.values()))).image_shape
    image_bytes = math.prod(image_shape)
    if per_shard is None:
        per_shard = max(1, SHARD_BYTES // image_bytes)
    if isinstance(per_shard, bool) or not isinstance(per_shard, int) or per_shard < 1:
        raise DataError(f"per_shard: expected a positive number of records, got {per_shard!r}")
    classes = int(max(int(y.max(initial=0)) for _, y in arrays.values())) + 1
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        splits = {}
        for split, (x, y) in arrays.items():
            splits[split] = _write_split(work, split, x, y, per_shard, progress)
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "image_shape": list(image_shape),
                "classes": classes, "splits": splits}
        (work / SHARDS_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        _replace_dir(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    total = sum(s["records"] for s in splits.values())
    progress(f"shards: wrote {total:,} records ({total * image_bytes / 2**20:,.1f} MiB of pixels) "
             f"in {sum(len(s['files']) for s in splits.values())} files to {out_dir}")
    return out_dir


def _arrays_of(data: Splits | Arrays) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The splits to write, each checked as a ``Split`` (uint8 images, int64 labels of one count)."""
    if isinstance(data, Splits):
        arrays = {name: (getattr(data, name).x, getattr(data, name).y) for name in SPLIT_NAMES}
    else:
        unknown = sorted(set(data) - set(SPLIT_NAMES))
        missing = [name for name in REQUIRED_SPLITS if name not in data]
        if unknown or missing:
            raise DataError(f"write_shards: expected splits train, test and optionally val, "
                            f"got {', '.join(sorted(data)) or 'none'}")
        arrays = {name: (np.asarray(data[name][0]), np.asarray(data[name][1])) for name in SPLIT_NAMES
                  if name in data}
    checked = {}
    for name, (x, y) in arrays.items():
        labels = y.astype(np.int64) if np.issubdtype(y.dtype, np.integer) else y
        split = Split(x, labels)  # raises DataError on a wrong dtype or shape
        if len(split) == 0 and name in REQUIRED_SPLITS:
            raise DataError(f"write_shards: the {name} split has no images")
        if len(split) and (split.y.min() < 0 or split.y.max() > MAX_LABEL):
            raise DataError(f"write_shards: {name} labels must be 0..{MAX_LABEL}, "
                            f"got {split.y.min()}..{split.y.max()}")
        checked[name] = (split.x, split.y)
    shapes = {Split(x, y).image_shape for x, y in checked.values()}
    if len(shapes) != 1:
        raise DataError(f"write_shards: every split must hold images of one shape, got {sorted(shapes)}")
    return checked


def _write_split(work: Path, split: str, x: np.ndarray, y: np.ndarray, per_shard: int,
                 progress: Progress) -> dict[str, Any]:
    count = max(1, math.ceil(len(y) / per_shard))
    files = {}
    for index in range(count):
        name = shard_name(split, index, count)
        rows = slice(index * per_shard, (index + 1) * per_shard)
        with tf.io.TFRecordWriter(str(work / name)) as writer:
            for image, label in zip(x[rows], y[rows], strict=True):
                writer.write(_example(image, int(label)))
        files[name] = len(y[rows])
        progress(f"shards: {split} {index + 1}/{count}: {name} ({files[name]:,} records)")
    return {"records": int(len(y)), "files": files}


def _example(image: np.ndarray, label: int) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[np.ascontiguousarray(image).tobytes()])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    })).SerializeToString()


def _replace_dir(work: Path, out_dir: Path) -> None:
    """Rename ``work`` to ``out_dir``; an old shard directory there is moved aside first, then removed."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{work.name}")
        out_dir.rename(old)
    work.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

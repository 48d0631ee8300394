"""Tests for cllnn_edge.shards: the shard format written and read back, every kind of bad directory,
streaming statistics and fingerprint, the validation assignment, and the wiring into data and train."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cllnn_edge.config import Config
from cllnn_edge.data import Split, Splits, load_splits
from cllnn_edge.errors import DataError
from cllnn_edge.preprocessing import StandardizerStats, fit_standardizer
from cllnn_edge.shard_writer import write_shards
from cllnn_edge.shards import SHARDS_FILE, ShardedData, SplitsHead
from cllnn_edge.sources import data_for, head_size, splits_for
from export.cli.main import main as cli_main


def images(count: int, shape: tuple[int, ...], classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images of ``shape`` (H, W[, C]) with labels cycling through every class."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(count, *shape), dtype=np.uint8)
    return x, rng.permutation(np.arange(count) % classes).astype(np.int64)


def grey_splits() -> Splits:
    return Splits(train=Split(*images(90, (12, 10), 3, 1)), val=Split(*images(20, (12, 10), 3, 2)),
                  test=Split(*images(30, (12, 10), 3, 3)), source="synthetic")


def rgb_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"train": images(400, (8, 6, 3), 5, 4), "test": images(50, (8, 6, 3), 5, 5)}


def assert_stats_close(found: StandardizerStats, expected: StandardizerStats) -> None:
    assert found.samples == expected.samples and found.channels == expected.channels
    np.testing.assert_allclose(found.mean, expected.mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(found.scale, expected.scale, rtol=0, atol=1e-9)


def dataset_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


def rewrite_meta(directory: Path, **changes: object) -> None:
    meta = json.loads((directory / SHARDS_FILE).read_text())
    (directory / SHARDS_FILE).write_text(json.dumps({**meta, **changes}))


@pytest.fixture
def grey_dir(tmp_path: Path) -> Path:
    return write_shards(grey_splits(), tmp_path / "grey", per_shard=40)


# --- round trips -----------------------------------------------------------------------------


def test_grey_splits_round_trip(grey_dir: Path) -> None:
    splits = grey_splits()
    meta = json.loads((grey_dir / SHARDS_FILE).read_text())
    assert meta["image_shape"] == [12, 10, 1] and meta["classes"] == 3
    assert sorted(meta["splits"]["train"]["files"]) == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    data = ShardedData(grey_dir)
    assert data.summary() == {**splits.summary(), "source": str(grey_dir)}
    head = data.head(1000)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(head, name).x, getattr(splits, name).x)
        np.testing.assert_array_equal(getattr(head, name).y, getattr(splits, name).y)
    assert_stats_close(data.standardizer_stats(), fit_standardizer(splits.train.x))
    x, y = dataset_arrays(data.test_dataset(7))
    assert x.dtype == np.float32 and x.shape == (30, 12, 10, 1) and y.dtype == np.int64
    np.testing.assert_array_equal(x[..., 0], splits.test.x.astype(np.float32))
    x, y = dataset_arrays(data.train_dataset(16, seed=3))
    order = np.lexsort(x.reshape(len(x), -1).T)  # shuffled: the same images in another order
    expected = splits.train.x.reshape(90, -1).astype(np.float32)
    assert not np.array_equal(x[..., 0].reshape(90, -1), expected)
    np.testing.assert_array_equal(x.reshape(90, -1)[order], expected[np.lexsort(expected.T)])


def test_rgb_arrays_round_trip_with_validation_drawn_from_train(tmp_path: Path) -> None:
    arrays = rgb_arrays()
    data = ShardedData(write_shards(arrays, tmp_path / "rgb", per_shard=64), validation_fraction=0.2)
    assert data.derived_val and data.image_shape == (8, 6, 3) and data.num_classes == 5
    summary = data.summary()
    assert summary["train"] + summary["val"] == 400 and summary["test"] == 50
    assert 50 <= summary["val"] <= 110  # 20 % of 400, a hash's spread
    x_train, _ = dataset_arrays(data.train_dataset(64))
    x_val, _ = dataset_arrays(data.val_dataset(64))
    assert (len(x_train), len(x_val)) == (summary["train"], summary["val"])
    rows = {row.tobytes() for row in np.concatenate([x_train, x_val]).astype(np.uint8)}
    assert rows == {row.tobytes() for row in arrays["train"][0]}  # every record once, on one side
    kept = np.array([row.tobytes() not in {v.tobytes() for v in x_val.astype(np.uint8)}
                     for row in arrays["train"][0]])
    assert_stats_close(data.standardizer_stats(), fit_standardizer(arrays["train"][0][kept]))
    head = data.head(30)
    assert head.val.x.shape == (30, 8, 6, 3) and head.num_classes == 5 and head.summary() == summary


def test_validation_assignment_is_the_same_in_every_pass_and_reader(tmp_path: Path) -> None:
    directory = write_shards(rgb_arrays(), tmp_path / "rgb", per_shard=64)

    def val_digest(data: ShardedData) -> str:
        x, y = dataset_arrays(data.val_dataset(32))
        return hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()

    first = ShardedData(directory)
    assert val_digest(first) == val_digest(first) == val_digest(ShardedData(directory))
    assert first.summary()["val"] == ShardedData(directory).summary()["val"]
    assert val_digest(ShardedData(directory, split_seed=7)) != val_digest(first)


def test_splits_for_holds_the_head_and_data_for_streams(grey_dir: Path) -> None:
    cfg = Config()
    assert head_size(cfg) == 1000
    head = splits_for(cfg, str(grey_dir))
    assert isinstance(head, SplitsHead) and len(head.train) == 90 and head.num_classes == 3
    assert isinstance(data_for(cfg, str(grey_dir)), ShardedData)
    assert isinstance(data_for(cfg, "embedded"), Splits)


# --- fingerprint -----------------------------------------------------------------------------


def test_fingerprint_follows_every_byte_not_the_path(grey_dir: Path, tmp_path: Path) -> None:
    first = ShardedData(grey_dir).fingerprint()
    copy = shutil.copytree(grey_dir, tmp_path / "copy")
    assert ShardedData(copy).fingerprint() == first
    shard = copy / "test-00000-of-00001.tfrecord"
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 1
    shard.write_bytes(bytes(raw))
    assert ShardedData(copy).fingerprint() != first


# --- bad directories and records ---------------------------------------------------------------


def test_missing_directory_or_metadata(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such directory"):
        ShardedData(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty/shards.json: missing"):
        ShardedData(tmp_path / "empty")


@pytest.mark.parametrize(("changes", "message"), [
    ({"format": "npz"}, "expected \"format\": 'cllnn-edge-shards', found 'npz'"),
    ({"version": 2}, "expected version 1, found 2"),
    ({"image_shape": [12, 10, 2]}, r"image_shape must be \[height, width, channels\]"),
    ({"classes": 1}, "classes must be an integer >= 2, found 1"),
])
def test_bad_metadata_is_named(grey_dir: Path, changes: dict, message: str) -> None:
    rewrite_meta(grey_dir, **changes)
    with pytest.raises(DataError, match=message):
        ShardedData(grey_dir)


def test_unreadable_metadata_and_missing_splits(grey_dir: Path) -> None:
    meta = json.loads((grey_dir / SHARDS_FILE).read_text())
    (grey_dir / SHARDS_FILE).write_text("{not json")
    with pytest.raises(DataError, match="cannot read as JSON"):
        ShardedData(grey_dir)
    rewrite_meta_dict = {**meta, "splits": {k: v for k, v in meta["splits"].items() if k != "test"}}
    (grey_dir / SHARDS_FILE).write_text(json.dumps(rewrite_meta_dict))
    with pytest.raises(DataError, match=r"no test shards listed .* found 1 test-\*.tfrecord"):
        ShardedData(grey_dir)


def test_missing_or_unlisted_shard_files(grey_dir: Path) -> None:
    (grey_dir / "train-00001-of-00003.tfrecord").rename(grey_dir / "train-00009-of-00003.tfrecord")
    with pytest.raises(DataError, match="train shard train-00001-of-00003.tfrecord listed in shards.json is missing"):
        ShardedData(grey_dir)
    (grey_dir / "train-00009-of-00003.tfrecord").rename(grey_dir / "train-00001-of-00003.tfrecord")
    (grey_dir / "test-00000-of-00002.tfrecord").write_bytes(b"")
    with pytest.raises(DataError, match="test-00000-of-00002.tfrecord is not listed in shards.json"):
        ShardedData(grey_dir)


def test_truncated_shard_names_the_file(grey_dir: Path) -> None:
    shard = grey_dir / "train-00001-of-00003.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-00001-of-00003.tfrecord: cannot read record 0\+ as a TFRecord"):
        ShardedData(grey_dir).standardizer_stats()


def test_corrupt_shard_names_the_file(grey_dir: Path) -> None:
    shard = grey_dir / "val-00000-of-00001.tfrecord"
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a pixel byte: the record's CRC no longer matches
    shard.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="val-00000-of-00001.tfrecord: cannot read record"):
        ShardedData(grey_dir).scan()


def test_record_of_the_wrong_size(grey_dir: Path) -> None:
    rewrite_meta(grey_dir, image_shape=[10, 12, 3])
    with pytest.raises(DataError, match=r"train-00000-of-00003.tfrecord: record 0 holds 120 image bytes; "
                                        r"shards.json says 10x12x3 = 360"):
        ShardedData(grey_dir).scan()


def test_label_out_of_range(tmp_path: Path) -> None:
    x, y = images(20, (4, 4), 3, 0)
    directory = write_shards({"train": (x, y), "test": (x, y)}, tmp_path / "d")
    rewrite_meta(directory, classes=2)
    first = int(np.flatnonzero(y == 2)[0])
    with pytest.raises(DataError, match=f"record {first} has label 2; shards.json says 2 classes"):
        ShardedData(directory).summary()


def test_counts_not_matching(grey_dir: Path) -> None:
    meta = json.loads((grey_dir / SHARDS_FILE).read_text())
    meta["splits"]["test"] = {"records": 31, "files": {"test-00000-of-00001.tfrecord": 31}}
    (grey_dir / SHARDS_FILE).write_text(json.dumps(meta))
    with pytest.raises(DataError, match="test-00000-of-00001.tfrecord: shards.json declares 31 records, "
                                        "the file holds 30"):
        ShardedData(grey_dir).standardizer_stats()
    meta["splits"]["test"]["records"] = 30
    (grey_dir / SHARDS_FILE).write_text(json.dumps(meta))
    with pytest.raises(DataError, match="splits.test.records is 30, its files hold 31"):
        ShardedData(grey_dir)


# --- writing ---------------------------------------------------------------------------------


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def fail_after_first_file(line: str) -> None:
        raise OSError(f"disk full after {line}")

    with pytest.raises(OSError, match="disk full"):
        write_shards(grey_splits(), tmp_path / "out", per_shard=40, progress=fail_after_first_file)
    assert list(tmp_path.iterdir()) == []


def test_writing_replaces_a_shard_directory_but_not_another(grey_dir: Path, tmp_path: Path) -> None:
    write_shards(rgb_arrays(), grey_dir)
    assert ShardedData(grey_dir).image_shape == (8, 6, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grey"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match="exists and is not a shard directory"):
        write_shards(rgb_arrays(), tmp_path / "other")
    with pytest.raises(DataError, match="expected splits train, test and optionally val, got train"):
        write_shards({"train": rgb_arrays()["train"]}, tmp_path / "new")


def test_cli_writes_any_source_as_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "digits"
    assert cli_main(["shards", "sklearn-digits", "--out", str(out), "--per-shard", "500"]) == 0
    assert f"wrote 1,797 records (0.1 MiB of pixels) in 5 files to {out}" in capsys.readouterr().out
    data, splits = ShardedData(out), load_splits("sklearn-digits")
    assert data.summary() == {**splits.summary(), "source": str(out)}
    assert data.fingerprint() == ShardedData(out).fingerprint()
    assert cli_main(["shards", "no-such-source", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


# --- training --------------------------------------------------------------------------------


def test_train_streams_a_shard_directory(tmp_path: Path) -> None:
    from cllnn_edge.train import train

    arrays = rgb_arrays()
    directory = write_shards(arrays, tmp_path / "rgb", per_shard=100)
    cfg = Config().replace("model", conv_filters=(4,), reservoir_dim=8, lstm_units=4).replace("train", epochs=1)
    data = data_for(cfg, str(directory))
    result = train(cfg, data, tmp_path / "out", verbose=0)
    assert result.history["data"] == data.summary()
    assert result.history["config"]["model"]["image_shape"] == [8, 6, 3]
    assert result.history["timing"]["steps_per_epoch"] == -(-data.summary()["train"] // 64)
    saved = StandardizerStats.load(tmp_path / "out" / "preprocessing.json")
    assert_stats_close(saved, data.standardizer_stats())


def test_a_directory_named_with_glob_characters_reads_its_own_files(tmp_path: Path) -> None:
    splits = grey_splits()
    other = Splits(train=splits.train, val=splits.val, test=Split(*images(30, (12, 10), 3, 9)), source="other")
    write_shards(other, tmp_path / "grey", per_shard=40)  # what the path read as a pattern would match
    directory = write_shards(splits, tmp_path / "gr[e]y*", per_shard=40)
    x, y = dataset_arrays(ShardedData(directory).test_dataset(64))
    np.testing.assert_array_equal(x[..., 0], splits.test.x.astype(np.float32))
    np.testing.assert_array_equal(y, splits.test.y)

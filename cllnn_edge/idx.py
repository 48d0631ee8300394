"""MNIST's IDX files: the four of a directory, raw or gzipped, parsed strictly.

An IDX file is a big-endian magic number (its element type and number of dimensions),
the dimensions, then exactly their product of bytes. Every bad file raises
:class:`~cllnn_edge.errors.DataError` naming it; ``cllnn_edge.data`` checks the arrays.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from cllnn_edge.errors import DataError

# The four MNIST IDX files of a directory, in the order x_train, y_train, x_test, y_test.
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IDX_IMAGES_MAGIC = 0x00000803  # 2051: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # 2049: unsigned bytes, 1 dimension


def read_idx_dir(directory: Path) -> list[np.ndarray]:
    """x_train, y_train, x_test, y_test from the four IDX files of ``directory`` (``IDX_FILES``)."""
    arrays = []
    for name in IDX_FILES:
        magic = IDX_IMAGES_MAGIC if "images" in name else IDX_LABELS_MAGIC
        arrays.append(_read_idx(_find_idx_file(directory, name), magic))
    return arrays


def _find_idx_file(directory: Path, name: str) -> Path:
    """The first of ``name``, ``name.gz`` and the dotted spellings that exists."""
    dotted = name.replace("-idx", ".idx")  # train-images.idx3-ubyte
    for candidate in (name, f"{name}.gz", dotted, f"{dotted}.gz"):
        path = directory / candidate
        if path.is_file():
            return path
    found = sorted(p.name for p in directory.iterdir())
    raise DataError(
        f"{directory}: missing IDX file {name} (or {name}.gz); found "
        f"{', '.join(found[:10]) or 'an empty directory'}"
        f"{' ...' if len(found) > 10 else ''}"
    )


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one IDX file: big-endian magic, dims, then exactly prod(dims) bytes."""
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: cannot read{' gzip' if path.suffix == '.gz' else ''} "
            f"file: {type(exc).__name__}: {exc}"
        ) from exc
    ndim = magic & 0xFF
    header_size = 4 * (1 + ndim)
    if len(data) < header_size:
        raise DataError(
            f"{path}: expected an IDX header of {header_size} bytes, "
            f"found only {len(data)} bytes"
        )
    (found_magic,) = struct.unpack(">I", data[:4])
    if found_magic != magic:
        raise DataError(
            f"{path}: bad IDX magic number: expected {magic} (0x{magic:08x}), "
            f"found {found_magic} (0x{found_magic:08x})"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = int(np.prod(dims, dtype=np.int64))
    payload = len(data) - header_size
    if payload != expected:
        raise DataError(
            f"{path}: IDX header declares dims {dims} = {expected} bytes of "
            f"data, found {payload} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)

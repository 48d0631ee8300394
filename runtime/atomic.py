"""Atomic file writes: a file appears under its final name complete, or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it over ``final`` on success.

    The temporary keeps ``final``'s suffix (Keras insists on ``.keras``). On any
    exception, including KeyboardInterrupt, the temporary is removed and
    ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=f".tmp{final.suffix}", dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; use the usual mode
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(final: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``final`` atomically and return the final path."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def json_text(obj: Any) -> str:
    """The toolkit's JSON layout: indented, keys sorted (stable diffs), newline-terminated."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def write_json_atomic(final: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as JSON to ``final`` atomically."""
    return write_bytes_atomic(final, json_text(obj).encode("utf-8"))


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

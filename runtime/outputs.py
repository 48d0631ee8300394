"""Output paths checked before the work: every command refuses a bad one up front, creating nothing.

One rule for all the toolkit's commands (``cllnn-export``, ``cllnn-bench``):

- an output *directory* (``--out DIR``) may exist (then it must be a directory
  this process can write) or not yet (then it is created, parents and all,
  when the command writes; the nearest existing ancestor must be a writable
  directory);
- a report *file* (``--json FILE``, ``--junit FILE``) goes into a directory
  that exists and is writable; the file itself, if it exists, must be a file
  (it is replaced atomically).

Writability is proven, not guessed from permission bits (which root and
read-only file systems make misleading): a temporary file is created in the
directory and removed at once. The check creates nothing else.
Standard library only, so ``runtime`` and ``export`` share it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from runtime.errors import EdgeRuntimeError


class OutputPathError(EdgeRuntimeError, ValueError):
    """An output path cannot be written as asked; the message names the flag, the path and why."""


def check_output_dir(path: str | os.PathLike[str], label: str = "output directory") -> Path:
    """Refuse a ``path`` that cannot become or be a writable directory; create nothing."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise OutputPathError(f"{label} {path} cannot be written: it is a file, not a directory")
        _prove_writable(path, label, path)
        return path
    ancestor = _nearest_existing(path)
    if not ancestor.is_dir():
        raise OutputPathError(f"{label} {path} cannot be written: {ancestor} is a file, not a directory")
    _prove_writable(ancestor, label, path)
    return path


def check_output_file(path: str | os.PathLike[str], label: str = "output file") -> Path:
    """Refuse a report file that is a directory or whose directory is missing or not writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{label} {path} cannot be written: it is a directory; give a file name")
    if path.exists() and not path.is_file():
        raise OutputPathError(f"{label} {path} cannot be written: it exists and is not a regular file")
    parent = path.parent
    if not parent.exists():
        raise OutputPathError(f"{label} {path} cannot be written: directory {parent} does not exist")
    if not parent.is_dir():
        raise OutputPathError(f"{label} {path} cannot be written: {parent} is a file, not a directory")
    _prove_writable(parent, label, path)
    return path


def _nearest_existing(path: Path) -> Path:
    for candidate in path.absolute().parents:
        if candidate.exists():
            return candidate
    return Path(path.absolute().anchor)


def _prove_writable(directory: Path, label: str, path: Path) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-probe-"):
            pass
    except OSError as exc:
        raise OutputPathError(
            f"{label} {path} cannot be written: {directory} is not writable ({exc.strerror or exc})"
        ) from exc

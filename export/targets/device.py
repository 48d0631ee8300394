"""The one interface every transport fills: a device runs commands and holds files, inside its own
working directory, and the host reaches it only through these calls.

Paths on the device are ``PurePosixPath``s relative to its working directory (``Device.root``), so
nothing the host asks for lands outside it; a command runs with that directory as its current one.
A command's output is bounded (``MAX_OUTPUT``): a device that answers with megabytes of noise is an
error, not a memory problem on the host. Every failure is a ``TargetError`` naming the target.
"""

from __future__ import annotations

import abc
import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from export.errors import TargetError
from export.targets.spec import TargetSpec

MAX_OUTPUT = 16 * 1024 * 1024  # bytes of stdout or stderr kept from one command on a device
DEFAULT_TIMEOUT = 600.0  # seconds one command may take (an emulated bench is slow)


@dataclass(frozen=True)
class Completed:
    """What one command on the device did."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    def tail(self, lines: int = 5) -> str:
        """The last lines of stderr (else stdout), for a message."""
        text = (self.stderr or self.stdout).decode("utf-8", "replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no output)"


class Device(abc.ABC):
    """A machine the host drives. ``spec`` says which; ``python`` is the command that runs Python 3 there."""

    def __init__(self, spec: TargetSpec, python: str = "python3") -> None:
        self.spec, self.python = spec, python

    @abc.abstractmethod
    def run(self, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT,
            env: dict[str, str] | None = None) -> Completed:
        """Run ``argv`` on the device in its working directory; ``env`` is added to its environment."""

    @abc.abstractmethod
    def put(self, local: Path, remote: PurePosixPath) -> None:
        """Copy the file ``local`` to ``remote`` on the device, whole or not at all (written beside it,
        then renamed)."""

    @abc.abstractmethod
    def get(self, remote: PurePosixPath, local: Path, *, max_bytes: int) -> None:
        """Copy the device's ``remote`` to ``local`` (atomically); more than ``max_bytes`` is refused."""

    def checked(self, argv: Sequence[str], *, what: str, timeout: float = DEFAULT_TIMEOUT,
                env: dict[str, str] | None = None) -> Completed:
        """``run``, with a non-zero exit turned into a ``TargetError`` saying ``what`` failed there."""
        done = self.run(argv, timeout=timeout, env=env)
        if done.returncode != 0:
            raise TargetError(f"target {self.spec.text}: {what} failed (exit {done.returncode}): {done.tail()}")
        return done


def relative(remote: PurePosixPath | str) -> PurePosixPath:
    """``remote`` as a path inside the device's working directory: absolute paths and ``..`` refused."""
    path = PurePosixPath(remote)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise TargetError(f"device path {str(remote)!r} must be relative to the device's working directory, "
                          f"without '..'")
    return path


def run_process(argv: Sequence[str], *, spec: TargetSpec, timeout: float, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> Completed:
    """Run a host process that speaks to the device (ssh, qemu, or the command itself for ``local``)
    in a session of its own: on a timeout or Ctrl-C the whole process group is killed, so nothing keeps
    running there. Its output goes to temporary files and is read back only up to ``MAX_OUTPUT``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            process = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=err, start_new_session=True)
        except OSError as exc:
            raise TargetError(f"target {spec.text}: cannot start {argv[0]}: {exc.strerror or exc}") from exc
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _kill_group(process)
            raise TargetError(f"target {spec.text}: {argv[0]} took longer than {timeout:.0f} s; stopped") from exc
        except BaseException:  # Ctrl-C: end the device side too, then let the interrupt go on
            _kill_group(process)
            raise
        return Completed(tuple(argv), returncode, _bounded(out, spec, "stdout"), _bounded(err, spec, "stderr"))


def _bounded(stream: IO[bytes], spec: TargetSpec, name: str) -> bytes:
    size = stream.seek(0, os.SEEK_END)
    if size > MAX_OUTPUT:
        raise TargetError(f"target {spec.text}: a command wrote {size:,} bytes to {name}, more than the "
                          f"{MAX_OUTPUT:,} kept; refusing its output")
    stream.seek(0)
    return stream.read()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()

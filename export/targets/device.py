"""The one interface every transport fills: a device runs commands and holds files, inside its own
working directory, and the host reaches it only through these calls.

Paths on the device are ``PurePosixPath``s relative to its working directory (``Device.root``), so
nothing the host asks for lands outside it; a command runs with that directory as its current one.
A command's output is bounded (``MAX_OUTPUT``): a device that answers with megabytes of noise is an
error, not a memory problem on the host. Every failure is a ``TargetError`` naming the target.
"""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from export.errors import TargetError
from export.targets.spec import TargetSpec

MAX_OUTPUT = 16 * 1024 * 1024  # bytes of stdout or stderr kept from one command on a device
DEFAULT_TIMEOUT = 600.0  # seconds one command may take (an emulated bench is slow)
MIN_PYTHON = (3, 10)  # the oldest Python the device side runs on (pyproject's requires-python)
KILL_WAIT = 5.0  # seconds a killed process group is given to be gone
POLL = 0.05  # seconds between checks of a running command's output size and deadline


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
                env: dict[str, str] | None = None, stdin: Path | None = None, hold_stdin: bool = False,
                stdout: Path | None = None, max_stdout: int = MAX_OUTPUT) -> Completed:
    """Run a host process that speaks to the device (ssh, qemu, or the command itself for ``local``)
    in a session of its own: on a timeout or Ctrl-C the whole process group is killed, so nothing keeps
    running there. Its output goes to temporary files, watched while it runs: past ``MAX_OUTPUT`` (or
    ``max_stdout``) the process is stopped and its output refused.

    ``stdin``: a file streamed to it (``SshDevice.put``); ``hold_stdin``: a pipe the host holds open
    until the process ends instead of an empty stdin (its end-of-file tells a wrapper on the device that
    the host is gone, ``export.targets.ssh``); ``stdout``: a file its output is written to instead of
    kept (``SshDevice.get``; the returned ``Completed.stdout`` is then empty)."""
    with contextlib.ExitStack() as files:
        out = files.enter_context(open(stdout, "wb") if stdout else tempfile.TemporaryFile())
        err = files.enter_context(tempfile.TemporaryFile())
        source = (files.enter_context(open(stdin, "rb")) if stdin  # noqa: SIM115 (the stack closes it)
                  else subprocess.PIPE if hold_stdin else subprocess.DEVNULL)
        try:
            process = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=source, stdout=out, stderr=err,
                                       start_new_session=True)
        except OSError as exc:
            raise TargetError(f"target {spec.text}: cannot start {argv[0]}: {exc.strerror or exc}") from exc
        try:
            returncode = _wait(process, spec, timeout, ((out, "stdout", max_stdout), (err, "stderr", MAX_OUTPUT)))
        except BaseException:  # a timeout, a flood, Ctrl-C: end the device side too, then let it go on
            _kill_group(process)
            raise
        finally:
            if process.stdin is not None:
                process.stdin.close()
        kept = b"" if stdout else _read(out)
        return Completed(tuple(argv), returncode, kept, _read(err))


def _wait(process: subprocess.Popen[bytes], spec: TargetSpec, timeout: float,
          streams: Sequence[tuple[IO[bytes], str, int]]) -> int:
    """``process``'s exit code, once it ends within ``timeout`` seconds and each stream stays within its
    limit (checked every ``POLL`` seconds and at the end, so a flood is stopped within one interval's worth)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            returncode = process.wait(timeout=min(POLL, max(deadline - time.monotonic(), 0.001)))
        except subprocess.TimeoutExpired:
            returncode = None
        for stream, name, limit in streams:
            size = os.fstat(stream.fileno()).st_size
            if size > limit:
                raise TargetError(f"target {spec.text}: a command wrote {size:,} bytes to {name}, more than "
                                  f"the {limit:,} kept; stopped it and refused its output")
        if returncode is not None:
            return returncode
        if time.monotonic() >= deadline:
            raise TargetError(f"target {spec.text}: {process.args[0]} took longer than {timeout:.0f} s; stopped")


def _read(stream: IO[bytes]) -> bytes:
    stream.seek(0)
    return stream.read()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``process``'s group, then wait (a few seconds at most) until no member is left: a killed
    process dies asynchronously, and the caller is told that nothing runs any more."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    deadline = time.monotonic() + KILL_WAIT
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/cllnn-edge`` (``~/.cache/cllnn-edge`` when unset): what the host sets up once and
    reuses for its devices (the emulated root, downloaded wheels, the local device's directory)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cllnn-edge"

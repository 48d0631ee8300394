"""Child processes that die with their parent, even when the parent is killed with SIGKILL.

A converter or benchmark process left running after ``kill -9`` of the command
that started it holds CPU, memory and half-written files that nothing will
collect. The toolkit ties each child it starts to its parent:

- a Python child of ours (``python -m export.formats.worker``) calls ``die_with_parent()``
  first thing in its ``__main__``;
- any other command (``python -m tf2onnx.convert``, a benchmark section, a
  ``cllnn-export run`` started by the benchmark suite) is started through
  ``guarded(command)``: ``python -m export.lifeline COMMAND...`` ties itself to
  its parent, then becomes ``COMMAND`` (``exec``, same process).

Either way the child is started with ``child_env()``, which tells it its
parent's process id. On Linux the tie is the kernel's parent-death signal
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``, kept across ``exec``): the child is
killed the moment its parent dies, however it dies; the child then checks
its parent is still the one that started it, since the parent may have died
before the signal was armed. A chain of children (CLI -> worker -> tf2onnx)
unwinds link by link. The kernel sends the signal when the *thread* that
started the child ends, so start children from a thread that waits for them
(``subprocess.run`` does). Elsewhere, a daemon thread polls the parent once
a second and ends the child (and, under ``guarded``, the command it runs).

Standard library only, so ``runtime`` and ``export`` share it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence

PARENT_ENV = "CLLNN_PARENT_PID"  # set by child_env(): the pid the child must outlive no longer than
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_S = 1.0


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) plus this process's id, for a tied child."""
    return {**(os.environ if env is None else env), PARENT_ENV: str(os.getpid())}


def guarded(command: Sequence[str]) -> list[str]:
    """``command`` run through ``python -m export.lifeline``, which dies with the caller; start it with
    ``env=child_env()``."""
    return [sys.executable, "-m", "export.lifeline", *command]


def die_with_parent() -> bool:
    """Tie this process to the parent named by ``child_env()``: killed when it dies. Returns whether
    a tie was asked for (the variable is removed, so what this process starts is not tied to the
    grandparent by mistake). Ends this process at once if the parent is already gone."""
    expected = os.environ.pop(PARENT_ENV, None)
    if expected is None:
        return False
    parent = int(expected)
    if not _arm_parent_death_signal():
        _watch(parent, lambda: os.kill(os.getpid(), signal.SIGKILL))
    if os.getppid() != parent:  # it died before the signal was armed: no one is waiting for us
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def _arm_parent_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def _watch(parent: int, end: Callable[[], object]) -> None:
    def poll() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        end()

    threading.Thread(target=poll, name="lifeline", daemon=True).start()


def main(argv: Sequence[str]) -> int:
    """``python -m export.lifeline COMMAND...``: tie to the parent, then run COMMAND as this process."""
    if not argv:
        print("usage: python -m export.lifeline COMMAND [ARG...]", file=sys.stderr)
        return 2
    if sys.platform.startswith("linux"):
        die_with_parent()
        os.execvp(argv[0], list(argv))  # the parent-death signal stays armed across exec
    # elsewhere: stay, run the command as a child, and end both when the parent goes
    parent = int(os.environ.pop(PARENT_ENV, os.getppid()))
    child = subprocess.Popen(list(argv))

    def end() -> None:
        child.kill()
        os._exit(1)

    _watch(parent, end)
    if os.getppid() != parent:
        end()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""export.lifeline: a child the toolkit starts dies with its parent, even on kill -9, grandchildren too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runtime.helpers import REPO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the tie is Linux's")

# A parent that starts a tied Python child (die_with_parent, as export.formats.worker does), which starts a
# command through guarded() (as the worker starts tf2onnx); each prints its pid, then all wait.
PARENT = """
import subprocess, sys, time
from export.lifeline import child_env
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], env=child_env())
print("child", child.pid, flush=True)
child.wait()
"""
CHILD = """
import subprocess, sys
from export.lifeline import child_env, die_with_parent, guarded
assert die_with_parent()
grandchild = subprocess.Popen(guarded([sys.executable, "-c", "import time; time.sleep(300)", sys.argv[1]]),
                              env=child_env())
print("grandchild", grandchild.pid, flush=True)
grandchild.wait()
"""


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_gone(pids: list[int], seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def test_kill_9_of_the_parent_takes_its_child_and_grandchild_with_it(tmp_path: Path) -> None:
    marker = str(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, marker], stdout=subprocess.PIPE, text=True,
                              env=env, start_new_session=True)
    try:
        # each prints "<role> <pid>" into the same pipe, in either order
        pids = dict(parent.stdout.readline().split() for _ in range(2))
        child, grandchild = int(pids["child"]), int(pids["grandchild"])
        expected = [b"-c", b"import time; time.sleep(300)", marker.encode()]
        deadline = time.monotonic() + 30
        # until the lifeline has exec'd into the command (mid-exec, /proc/<pid>/cmdline reads empty)
        while _cmdline(grandchild).split(b"\0")[1:4] != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _cmdline(grandchild).split(b"\0")[1:4] == expected
        assert alive(child) and alive(grandchild)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert wait_gone([child, grandchild]) == []
    finally:
        for pid in (parent.pid,):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_child_whose_parent_is_already_gone_ends_at_once(tmp_path: Path) -> None:
    """The parent died before the signal was armed: the child must not run on as an orphan."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CLLNN_PARENT_PID": "1" if os.getpid() != 1 else "2"}
    done = subprocess.run([sys.executable, "-m", "export.lifeline", "sleep", "300"], env=env, timeout=60)
    assert done.returncode == -signal.SIGKILL


def test_without_a_parent_named_the_command_just_runs() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CLLNN_PARENT_PID"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "export.lifeline", sys.executable, "-c", "print('ran')"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "ran\n"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""

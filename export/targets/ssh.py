"""``ssh://[user@]host[:port]``: a machine reached through the OpenSSH client, so ~/.ssh/config, agents,
known_hosts and ProxyJump work as they do for the user's own ``ssh``.

Nothing is accepted blindly: ``BatchMode=yes`` (never a password prompt: a key or an agent, or a clear
refusal), ``StrictHostKeyChecking=yes`` (an unknown or changed host key is refused, with how to add it).
Every command goes through ``ssh_agent`` on the device, a small standard-library wrapper sent with it:
it runs the command in the device's working directory (``DEVICE_ROOT``), moves files whole (``put``: a
temporary name beside the target, checked for size, then renamed; ``get``: the size checked before a
byte is sent), and kills the command's process group when its stdin ends. That last part is what ends
a remote command on a timeout or Ctrl-C: the host kills its ssh, sshd closes the command's pipes, and
sshd sends no signal to a command run without a terminal (``ssh -tt`` would, but mixes stderr into
stdout and mangles binary output), so without the wrapper it would run on.
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from export.errors import TargetError
from export.targets.device import DEFAULT_TIMEOUT, MIN_PYTHON, Completed, Device, relative, run_process
from export.targets.spec import SSH, TargetSpec
from runtime.atomic import atomic_path

# Under the remote user's home: found again by the next run (what a device already holds is not sent
# twice), needs no root and no setting, and is the only place on the device this toolkit writes.
DEVICE_ROOT = "~/.cache/cllnn-edge/device"
CONNECT_TIMEOUT = 10  # seconds ssh waits for the connection (ConnectTimeout)
AGENT_SOURCE = Path(__file__).with_name("ssh_agent.py")
AGENT_MARK, AGENT_EXIT = "cllnn-edge-device:", 125  # as ssh_agent.py writes them
PYTHON = ".".join(map(str, MIN_PYTHON))  # as messages and the device-side wrapper spell it
SSH_FAILED = 255  # ssh's own exit code: it could not connect or log in


class SshDevice(Device):
    """A device over ssh. ``options``: extra ssh arguments placed before the destination (the tests
    give ``-F their-config``; users set things in ~/.ssh/config instead). ``root``: the working
    directory there (``~`` is the remote user's home)."""

    def __init__(self, spec: TargetSpec, python: str = "python3", *, root: str = DEVICE_ROOT,
                 options: Sequence[str] = (), ssh: str = "ssh", connect_timeout: int = CONNECT_TIMEOUT) -> None:
        if spec.kind != SSH or spec.host is None:
            raise TargetError(f"target {spec.text}: not an ssh://[user@]host[:port] target")
        super().__init__(spec, python)
        if shutil.which(ssh) is None:
            raise TargetError(f"target {spec.text}: the OpenSSH client ({ssh}) is not installed on this machine; "
                              f"install it (Debian: apt-get install openssh-client)")
        self.root = PurePosixPath(root)
        self.ssh, self.options, self.connect_timeout = ssh, tuple(options), connect_timeout
        self._agent = AGENT_SOURCE.read_text()

    @property
    def destination(self) -> str:
        """``[user@]host[:port]``, as messages name the machine."""
        user = f"{self.spec.user}@" if self.spec.user else ""
        host = f"[{self.spec.host}]" if ":" in str(self.spec.host) else self.spec.host
        return f"{user}{host}" + (f":{self.spec.port}" if self.spec.port else "")

    def ssh_argv(self, words: Sequence[str]) -> list[str]:
        """The ssh command line that runs ``words`` there, each quoted for the remote shell."""
        argv = [self.ssh, "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={self.connect_timeout}", "-o", "ServerAliveInterval=15",
                "-o", "ServerAliveCountMax=4"]
        if self.spec.port is not None:
            argv += ["-p", str(self.spec.port)]
        if self.spec.user is not None:
            argv += ["-l", self.spec.user]
        return [*argv, *self.options, "--", str(self.spec.host), " ".join(shlex.quote(w) for w in words)]

    def _agent_argv(self, mode: str, *args: str) -> list[str]:
        return self.ssh_argv([self.python, "-c", self._agent, PYTHON, mode, str(self.root), *args])

    def run(self, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT,
            env: dict[str, str] | None = None) -> Completed:
        if not argv:
            raise TargetError(f"target {self.spec.text}: no command to run")
        done = run_process(self._agent_argv("run", json.dumps(env or {}), *argv), spec=self.spec,
                           timeout=timeout, hold_stdin=True)
        self._raise_for(done, f"running {argv[0]}")
        return Completed(tuple(argv), done.returncode, done.stdout, done.stderr)

    def put(self, local: Path, remote: PurePosixPath, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        try:
            size = Path(local).stat().st_size
        except OSError as exc:
            raise TargetError(f"target {self.spec.text}: cannot send {local}: {exc.strerror or exc}") from exc
        path = str(relative(remote))
        done = run_process(self._agent_argv("put", path, str(size)), spec=self.spec, timeout=timeout, stdin=local)
        self._raise_for(done, f"sending {local} to {path}", any_exit=True)

    def get(self, remote: PurePosixPath, local: Path, *, max_bytes: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        path = str(relative(remote))
        with atomic_path(local) as temporary:
            done = run_process(self._agent_argv("get", path, str(max_bytes)), spec=self.spec, timeout=timeout,
                               stdout=temporary, max_stdout=max_bytes)
            self._raise_for(done, f"fetching {path}", any_exit=True)

    def _raise_for(self, done: Completed, what: str, *, any_exit: bool = False) -> None:
        """A ``TargetError`` saying what to do when ssh could not connect or log in, or the wrapper failed;
        nothing for a command's own exit unless ``any_exit`` (a transfer: only 0 is success)."""
        stderr = done.stderr.decode("utf-8", "replace")
        if done.returncode == SSH_FAILED and (problem := ssh_problem(stderr, self)):
            raise TargetError(f"target {self.spec.text}: {problem}")
        if done.returncode == 127 and "not found" in stderr and self.python in stderr:
            raise TargetError(f"target {self.spec.text}: no {self.python} on {self.destination} ({done.tail(1)}); "
                              f"the device needs Python >= {PYTHON}: install it there (Debian, Raspberry Pi OS: "
                              f"apt-get install python3)")
        marks = [line for line in stderr.splitlines() if line.startswith(AGENT_MARK)]
        if done.returncode == AGENT_EXIT and marks:
            kind, _, message = marks[-1][len(AGENT_MARK):].strip().partition(": ")
            doing = "" if kind == "old-python" else f"{what}: "  # not about this file: about the device
            raise TargetError(f"target {self.spec.text}: {doing}{agent_problem(kind, message)}")
        if any_exit and done.returncode != 0:
            raise TargetError(f"target {self.spec.text}: {what} failed (exit {done.returncode}): {done.tail()}")


def agent_problem(kind: str, message: str) -> str:
    """What the device-side wrapper's failure ``kind`` means, and what to do."""
    if kind == "old-python":
        return (f"{message}; the device needs Python >= {PYTHON}: install one there as python3 (Debian 12 and "
                f"Raspberry Pi OS bookworm have 3.11)")
    if kind == "disk-full":
        return f"the device's disk is full ({message}); nothing was left half-written: free space there and re-run"
    if kind == "truncated":
        return f"the transfer was cut ({message}); nothing was left half-written: re-run"
    if kind == "too-big":
        return f"refused: {message}"
    return message


def ssh_problem(stderr: str, device: SshDevice) -> str | None:
    """What ssh's own failure (exit 255) says, in words that name what to do; None when it is not one
    of the failures recognised here (the command itself may have exited 255)."""
    spec, where = device.spec, device.destination
    port = spec.port or 22
    login = f"{spec.user}@{spec.host}" if spec.user else str(spec.host)
    known_as = f"[{spec.host}]:{port}" if port != 22 else str(spec.host)
    fingerprint = "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or ("Host key for" in stderr and "has changed" in stderr):
        return (f"the host key of {where} has CHANGED since it was added to known_hosts: refused. If the device "
                f"was reinstalled, check its new key's fingerprint on it ({fingerprint}) and remove the old one "
                f"(ssh-keygen -R '{known_as}'); otherwise someone may be in between: do not connect")
    if "Host key verification failed" in stderr or "host key is known" in stderr:
        return (f"the host key of {where} is not in known_hosts, and unknown keys are refused. Check its "
                f"fingerprint on the device ({fingerprint}), then add it: ssh-keyscan -p {port} {spec.host} "
                f">> ~/.ssh/known_hosts, or connect once by hand (ssh -p {port} {login}) and accept it")
    if "Permission denied" in stderr or "Too many authentication failures" in stderr:
        return (f"authentication refused by {where} ({_last_line(stderr, 'Permission denied')}): no key of yours "
                f"is authorised there, and passwords are never asked (BatchMode). Install your public key there "
                f"(ssh-copy-id -p {port} {login}) or load it into your agent (ssh-add)")
    for needle, why in (("Connection refused", "the connection was refused: is sshd running there, on that port?"),
                        ("timed out", f"no answer within {device.connect_timeout} s: is the host up and reachable?"),
                        ("Could not resolve hostname", "the host name does not resolve: check it (and ~/.ssh/config)"),
                        ("No route to host", "no route to the host: check the address and the network"),
                        ("Network is unreachable", "the network is unreachable from here"),
                        ("Connection closed", "the connection was closed before login: is it an SSH server?"),
                        ("Connection reset", "the connection was reset before login: is it an SSH server?")):
        if needle in stderr:
            return f"unreachable: {where}: {why} ({_last_line(stderr, needle)})"
    return None


def _last_line(text: str, needle: str) -> str:
    lines = [line.strip() for line in text.splitlines() if needle in line]
    return lines[-1] if lines else text.strip()[-200:]

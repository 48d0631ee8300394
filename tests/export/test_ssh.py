"""The ssh:// target against a real OpenSSH server: Debian's sshd, started here on 127.0.0.1 and a free
port with its own config, host key and user keys made by the test (no other address, no system config
touched), and ssh pointed at a known_hosts file the test writes, through an ssh config file (-F).

Where this user is root and ``unshare`` exists, sshd runs in a private mount namespace with a 1 MiB
tmpfs at SMALL, so a device whose disk is full is real too. Without sshd the tests skip, and fail
where CI is set (scripts/ensure-sshd installs it: ``make test`` runs it first).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from export.errors import TargetError, exit_code_of
from export.targets.probe import parse_probe, probe
from export.targets.spec import parse_target
from export.targets.ssh import AGENT_EXIT, AGENT_MARK, AGENT_SOURCE, SshDevice, ssh_problem
from runtime.machine import cpu_info
from runtime.probe import installed_version
from tests.export.processes import gone_within

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
ROOT = Path(__file__).resolve().parents[2]
SMALL = "small"  # the tmpfs inside sshd's mount namespace, under the server's directory


@dataclass(frozen=True)
class Server:
    directory: Path
    port: int
    user: str
    small_disk: bool  # SMALL is a 1 MiB tmpfs the server's sessions see

    def config(self, *, key: str = "user_key", known_hosts: str = "known_hosts") -> Path:
        """An ssh client config: this key only, this known_hosts only, no agent."""
        path = self.directory / f"ssh_config.{key}.{known_hosts}"
        path.write_text(f"Host *\n  IdentityFile {self.directory / key}\n  IdentitiesOnly yes\n"
                        f"  IdentityAgent none\n  UserKnownHostsFile {self.directory / known_hosts}\n"
                        f"  GlobalKnownHostsFile /dev/null\n")
        return path

    def device(self, root: Path | str, *, port: int | None = None, **config: str) -> SshDevice:
        spec = parse_target(f"ssh://{self.user}@127.0.0.1:{port or self.port}")
        return SshDevice(spec, python=sys.executable, root=str(root), options=("-F", str(self.config(**config))))


def _free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)


def _write_server_files(directory: Path, port: int, user: str) -> Path:
    for key in ("host_key", "other_host_key", "user_key", "other_key"):
        _keygen(directory / key)
    (directory / "authorized_keys").write_text((directory / "user_key.pub").read_text())
    host_key = (directory / "host_key.pub").read_text().split()
    (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    other = (directory / "other_host_key.pub").read_text().split()
    (directory / "changed_known_hosts").write_text(f"[127.0.0.1]:{port} {other[0]} {other[1]}\n")
    (directory / "empty_known_hosts").write_text("")
    config = directory / "sshd_config"
    config.write_text(f"ListenAddress 127.0.0.1:{port}\nHostKey {directory / 'host_key'}\n"
                      f"AuthorizedKeysFile {directory / 'authorized_keys'}\nPidFile {directory / 'sshd.pid'}\n"
                      f"AllowUsers {user}\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n"
                      "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                      "LogLevel VERBOSE\n")
    return config


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not Path(SSHD).exists():
        message = "sshd (Debian's openssh-server) is not installed: run scripts/ensure-sshd"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    directory, port, user = tmp_path_factory.mktemp("sshd"), _free_port(), getpass.getuser()
    config = _write_server_files(directory, port, user)
    sshd = [SSHD, "-D", "-e", "-f", str(config), "-E", str(directory / "sshd.log")]
    small = os.geteuid() == 0 and shutil.which("unshare") is not None
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation (Debian's unit makes it)
    if small:
        (directory / SMALL).mkdir()
        mount = f"mount -t tmpfs -o size=1m tmpfs {directory / SMALL} && exec \"$@\""
        sshd = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount, "sh", *sshd]
    process = subprocess.Popen(sshd, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process, directory / "sshd.log")
        yield Server(directory, port, user, small)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sshd exited ({process.returncode}): {log.read_text() if log.exists() else ''}")
        with socket.socket() as client:
            if client.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"sshd did not listen on 127.0.0.1:{port} within 15 s")


@pytest.fixture
def device(server: Server, tmp_path: Path) -> SshDevice:
    return server.device(tmp_path / "device")


def test_the_probe_over_ssh_returns_this_machines_facts(device: SshDevice, tmp_path: Path) -> None:
    facts = probe(device)
    here = cpu_info()
    assert (facts.cpu, facts.cpu_count, facts.machine) == (here, os.cpu_count(), os.uname().machine)
    assert facts.python == ".".join(map(str, sys.version_info[:3])) and facts.python_executable == sys.executable
    assert facts.glibc == os.confstr("CS_GNU_LIBC_VERSION").split()[1]
    assert facts.packages["numpy"] == installed_version("numpy") is not None
    assert facts.packages["onnxruntime"] == installed_version("onnxruntime")
    assert facts.directory == str(tmp_path / "device") and 0 < facts.disk_free_bytes
    assert parse_probe(json.dumps(facts.to_dict()).encode(), device.spec.text) == facts  # --json reads back


def test_put_and_get_move_a_2_mb_file_whole(device: SshDevice, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(2 * 1024 * 1024))
    device.put(source, PurePosixPath("bundle/model.bin"))
    back = tmp_path / "back" / "model.bin"
    device.get(PurePosixPath("bundle/model.bin"), back, max_bytes=2 * 1024 * 1024)
    assert back.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in (tmp_path / "device" / "bundle").iterdir()) == ["model.bin"]  # no .part left
    with pytest.raises(TargetError, match=r"more than the 2,097,151 accepted"):
        device.get(PurePosixPath("bundle/model.bin"), tmp_path / "big.bin", max_bytes=2 * 1024 * 1024 - 1)
    assert not (tmp_path / "big.bin").exists() and list(tmp_path.glob(".big.bin*")) == []
    with pytest.raises(TargetError, match=r"fetching bundle/missing.bin: reading .*: No such file or directory"):
        device.get(PurePosixPath("bundle/missing.bin"), tmp_path / "missing.bin", max_bytes=10)
    assert not (tmp_path / "missing.bin").exists()


def test_a_transfer_cut_mid_way_leaves_nothing_on_the_device(tmp_path: Path) -> None:
    """What the device side sees when the connection drops during a put: its stdin ends early."""
    done = subprocess.run([sys.executable, str(AGENT_SOURCE), "3.10", "put", str(tmp_path), "sub/model.bin", "1000"],
                          input=b"x" * 400, capture_output=True)
    assert done.returncode == AGENT_EXIT
    assert done.stderr.decode().strip() == f"{AGENT_MARK} truncated: received 400 of 1,000 bytes"
    assert list((tmp_path / "sub").iterdir()) == []  # neither the file nor its temporary


def test_every_word_reaches_the_device_as_it_was_written(device: SshDevice) -> None:
    words = ["a b", "it's", '"q"', "$HOME", "`id`", "; rm -rf x", "*", "", "\\n"]
    done = device.checked([device.python, "-c", "import json, os, sys; print(json.dumps([sys.argv[1:], "
                           "os.environ['CLLNN_X'], os.getcwd()]))", *words], what="echo", env={"CLLNN_X": "$x y"})
    assert json.loads(done.stdout) == [words, "$x y", str(device.root)]
    with pytest.raises(TargetError, match=r"target ssh://.*: verify failed \(exit 3\): no manifest"):
        device.checked([device.python, "-c", "import sys; print('no manifest', file=sys.stderr); sys.exit(3)"],
                       what="verify")


@pytest.mark.parametrize(("config", "named"), [
    ({"known_hosts": "empty_known_hosts"}, "is not in known_hosts, and unknown keys are refused.*ssh-keyscan -p"),
    ({"known_hosts": "changed_known_hosts"}, "has CHANGED since it was added to known_hosts.*ssh-keygen -R"),
    ({"key": "other_key"}, "authentication refused by .*passwords are never asked.*ssh-copy-id"),
])
def test_an_unknown_key_or_login_is_refused_saying_what_to_do(server: Server, tmp_path: Path,
                                                             config: dict[str, str], named: str) -> None:
    device = server.device(tmp_path / "device", **config)
    with pytest.raises(TargetError, match=named) as caught:
        device.run(["true"])
    assert str(caught.value).startswith(f"target ssh://{server.user}@127.0.0.1:{server.port}: ")
    assert exit_code_of(caught.value) == 2 and not (tmp_path / "device").exists()


@pytest.mark.parametrize(("stderr", "named"), [  # ssh's own words for failures a test here cannot cause
    ("ssh: connect to host 10.0.0.9 port 22: Connection timed out", "no answer within 10 s"),
    ("ssh: Could not resolve hostname board: Name or service not known", "the host name does not resolve"),
    ("ssh: connect to host 10.0.0.9 port 22: No route to host", "no route to the host"),
    ("kex_exchange_identification: read: Connection reset by peer", "reset before login"),
])
def test_ssh_failures_become_unreachable_with_the_reason(server: Server, stderr: str, named: str) -> None:
    problem = ssh_problem(stderr, server.device("x"))
    assert problem is not None and problem.startswith(f"unreachable: {server.user}@127.0.0.1:") and named in problem
    assert ssh_problem("the command's own exit 255", server.device("x")) is None


def test_a_closed_port_is_unreachable(server: Server, tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"unreachable: .*127\.0\.0\.1:\d+: the connection was refused"):
        server.device(tmp_path / "device", port=_free_port()).run(["true"])


def test_no_python_or_an_old_one_is_named_with_what_to_do(server: Server, tmp_path: Path) -> None:
    device = server.device(tmp_path / "device")
    device.python = "python3-not-there"
    with pytest.raises(TargetError, match=r"no python3-not-there on .*needs Python >= 3\.10: install"):
        probe(device)
    # A Python that says it is 3.9: this interpreter, told so by a sitecustomize before any code runs.
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text("import sys\nsys.version_info = (3, 9, 18, 'final', 0)\n"
                                                        "sys.version = '3.9.18 (pretend)'\n")
    old = tmp_path / "python3.9"
    old.write_text(f"#!/bin/sh\nPYTHONPATH={tmp_path / 'site'} exec {sys.executable} \"$@\"\n")
    old.chmod(0o755)
    device.python = str(old)
    with pytest.raises(TargetError, match=r"^target ssh://\S+: \S+ is Python 3\.9\.18, older than 3\.10; the "
                       r"device needs Python >= 3\.10: install one there as python3"):
        probe(device)




# A command that hangs, with a child that ignores SIGTERM; hang.pid holds both pids once both run.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(120)"
HANG = ("import os, subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {STUBBORN!r}], stdout=subprocess.PIPE)\n"
        "child.stdout.readline()\n"
        "open('hang.pid.part', 'w').write(f'{os.getpid()} {child.pid}'); os.rename('hang.pid.part', 'hang.pid')\n"
        "time.sleep(120)")


def _status(pid: int) -> str:
    """A process's name, state and parent, for a failure message."""
    try:
        fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":\t" in line)
    except (FileNotFoundError, ProcessLookupError):
        return f"{pid}: gone"
    return f"{pid}: {fields.get('Name', '?').strip()} {fields.get('State', '?').strip()} ppid {fields.get('PPid', '?').strip()}"


def _hung_pids(root: Path | str) -> list[int]:
    return [int(pid) for pid in (Path(str(root)) / "hang.pid").read_text().split()]


def test_a_hung_remote_command_is_stopped_on_timeout_and_ends_on_the_server(device: SshDevice) -> None:
    started = time.monotonic()
    with pytest.raises(TargetError, match="took longer than 3 s; stopped"):
        device.run([device.python, "-c", HANG], timeout=3)
    assert time.monotonic() - started < 15
    pids = _hung_pids(device.root)
    assert all(gone_within(pid, 10) for pid in pids), f"the remote command ({pids}) still runs on the server"


def test_over_a_shared_connection_too(device: SshDevice) -> None:
    """ControlMaster (one connection reused, as a user may set in ~/.ssh/config): a call reuses it, and
    killing the local ssh still ends the remote command."""
    sockets = Path(tempfile.mkdtemp(prefix="cm", dir="/tmp"))  # a socket path must stay short
    shared = ("-o", "ControlMaster=auto", "-o", f"ControlPath={sockets}/%C", "-o", "ControlPersist=30")
    device.options = (*device.options, *shared)
    try:
        assert device.checked(["true"], what="a first call").returncode == 0 and list(sockets.iterdir())
        with pytest.raises(TargetError, match="took longer than 3 s; stopped"):
            device.run([device.python, "-c", HANG], timeout=3)
        pids = _hung_pids(device.root)
        assert all(gone_within(pid, 10) for pid in pids), f"the remote command ({pids}) still runs on the server"
    finally:  # the master ssh this test started
        stop = device.ssh_argv([])[:-1]  # the same destination and ControlPath, "-O exit" before "--"
        stop[stop.index("--"):stop.index("--")] = ["-O", "exit"]
        subprocess.run(stop, capture_output=True, timeout=30)
        shutil.rmtree(sockets, ignore_errors=True)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_ctrl_c_or_a_killed_host_ends_the_remote_command(server: Server, tmp_path: Path, how: int) -> None:
    device = server.device(tmp_path / "device")
    # Ctrl-C as in a terminal: Python ignores SIGINT when it starts with SIGINT ignored, as a shell's
    # background job inherits it (nohup ... &), so the host sets the default handler itself.
    host = (f"import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            f"from export.targets.spec import parse_target; from export.targets.ssh import SshDevice; "
            f"d = SshDevice(parse_target({device.spec.text!r}), python={sys.executable!r}, root={str(device.root)!r}, "
            f"options={device.options!r}); d.run([{sys.executable!r}, '-c', {HANG!r}])")
    process = subprocess.Popen([sys.executable, "-c", host], cwd=ROOT, stderr=subprocess.PIPE)
    pid_file = tmp_path / "device" / "hang.pid"
    deadline = time.monotonic() + 60  # a loaded machine: ssh's handshake and three Pythons' starts
    while not pid_file.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    if not pid_file.exists():
        process.kill()
        raise AssertionError(f"the remote command did not start: {process.communicate()[1].decode()[-2000:]}")
    pids = _hung_pids(device.root)
    process.send_signal(how)
    _, stderr = process.communicate(timeout=30)
    if how == signal.SIGINT:
        assert b"KeyboardInterrupt" in stderr, stderr.decode()[-2000:]
    left = [pid for pid in pids if not gone_within(pid, 20)]
    assert not left, (f"the remote command's {left} of {pids} still run(s) after {how!r}: "
                      + "; ".join(_status(pid) for pid in left) + f"; host stderr: {stderr.decode()[-1000:]}")


@pytest.mark.parametrize("escape", ["../outside", "a/../../b", "/etc/passwd"])
def test_a_device_path_with_dots_is_refused_before_ssh_runs(server: Server, tmp_path: Path, escape: str) -> None:
    device = server.device(tmp_path / "device", port=_free_port())  # nothing listens: not contacted
    (tmp_path / "x").write_bytes(b"x")
    with pytest.raises(TargetError, match="relative to the device's working directory"):
        device.put(tmp_path / "x", PurePosixPath(escape))
    with pytest.raises(TargetError, match="relative to the device's working directory"):
        device.get(PurePosixPath(escape), tmp_path / "y", max_bytes=10)


def test_a_full_disk_on_the_device_leaves_nothing_half_written(server: Server, tmp_path: Path) -> None:
    if not server.small_disk:
        pytest.skip("needs root and unshare for sshd's private 1 MiB tmpfs")
    device = server.device(server.directory / SMALL / "device")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(2 * 1024 * 1024))
    with pytest.raises(TargetError, match="sending .*big.bin to big.bin: the device's disk is full"):
        device.put(source, PurePosixPath("big.bin"))
    listed = device.checked([device.python, "-c", "import os; print(os.listdir())"], what="ls")
    assert listed.stdout.strip() == b"[]"

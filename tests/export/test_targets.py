"""Targets: a TARGET string parsed and checked before anything is contacted, and the local device that
runs commands and moves files through the same calls a remote one answers."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path, PurePosixPath

import pytest

import export.targets.remote_run as remote_run
from export.cli.main import main
from export.errors import TargetError, exit_code_of
from export.targets.device import MAX_OUTPUT
from export.targets.local import LocalDevice
from export.targets.spec import EMULATED, LOCAL, SSH, TargetSpec, parse_named_target, parse_target
from tests.export.processes import alive


@pytest.mark.parametrize(("text", "expected"), [
    ("local", TargetSpec(LOCAL, "local")),
    ("emulated:cortex-a76", TargetSpec(EMULATED, "emulated:cortex-a76", cpu="cortex-a76")),
    ("ssh://pi@raspberrypi.local", TargetSpec(SSH, "ssh://pi@raspberrypi.local", host="raspberrypi.local", user="pi")),
    ("ssh://127.0.0.1:2222", TargetSpec(SSH, "ssh://127.0.0.1:2222", host="127.0.0.1", port=2222)),
    ("ssh://me@[::1]:22", TargetSpec(SSH, "ssh://me@[::1]:22", host="::1", user="me", port=22)),
    ("ssh://board", TargetSpec(SSH, "ssh://board", host="board")),  # user and port: ~/.ssh/config's
])
def test_a_target_parses_into_what_the_transport_needs(text: str, expected: TargetSpec) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(("text", "named"), [
    ("emulated:cortex-a53", "unknown emulated CPU 'cortex-a53'"),
    ("ssh://pi@host:70000", "port 70000 is outside 1..65535"),
    ("ssh://pi@host;rm -rf /", "is not one this toolkit drives"),
    ("ssh://-oProxyCommand=x", "is not one this toolkit drives"),  # never an ssh option in disguise
    ("ssh://-oProxyCommand", "is not one this toolkit drives"),
    ("ssh://-l@host", "is not one this toolkit drives"),
    ("pi@host", "is not one this toolkit drives"),
    ("", "is not one this toolkit drives"),
])
def test_a_bad_target_is_refused_naming_it_and_what_a_target_is(text: str, named: str) -> None:
    with pytest.raises(TargetError) as caught:
        parse_target(text)
    assert str(caught.value).startswith(f"target {text.strip()!r}") and named in str(caught.value)
    assert exit_code_of(caught.value) == 2  # the caller's to fix


def test_a_named_target_takes_a_plain_word_for_its_devices_directory() -> None:
    assert parse_named_target("a76=emulated:cortex-a76") == ("a76", parse_target("emulated:cortex-a76"))
    for bad in ("emulated:cortex-a76", "../x=local", "a b=local", "=local"):
        with pytest.raises(TargetError, match="NAME=TARGET"):
            parse_named_target(bad)


@pytest.fixture
def device(tmp_path: Path) -> LocalDevice:
    return LocalDevice(parse_target("local"), tmp_path / "device")


def test_the_local_device_runs_in_its_directory_and_moves_whole_files(device: LocalDevice, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(b"\x00\x01" * 1000)
    device.put(source, PurePosixPath("bundle/model.bin"))
    done = device.checked([device.python, "-c", "import os, sys; print(os.getcwd()); "
                           "print(open('bundle/model.bin', 'rb').read().count(1))"], what="a check")
    cwd, count = done.stdout.decode().split()
    assert Path(cwd) == device.root and count == "1000"
    back = tmp_path / "back" / "model.bin"
    device.get(PurePosixPath("bundle/model.bin"), back, max_bytes=2000)
    assert back.read_bytes() == source.read_bytes()
    with pytest.raises(TargetError, match="more than the 1,999 accepted"):
        device.get(PurePosixPath("bundle/model.bin"), tmp_path / "big", max_bytes=1999)
    assert not (tmp_path / "big").exists()


@pytest.mark.parametrize("escape", ["/etc/passwd", "../outside", "a/../../b", ""])
def test_a_device_path_never_leaves_the_working_directory(device: LocalDevice, tmp_path: Path, escape: str) -> None:
    with pytest.raises(TargetError, match="relative to the device's working directory"):
        device.get(PurePosixPath(escape) if escape else "", tmp_path / "x", max_bytes=10)


def test_a_failing_command_names_the_target_what_failed_and_its_last_words(device: LocalDevice) -> None:
    with pytest.raises(TargetError, match=r"target local: verify failed \(exit 3\): no manifest here"):
        device.checked([device.python, "-c", "import sys; sys.exit('no manifest here' and 3) if print("
                        "'no manifest here', file=sys.stderr) is None else 0"], what="verify")


def test_a_command_that_hangs_is_stopped_with_its_children(device: LocalDevice) -> None:
    started = time.monotonic()
    child = "import os, time; open('child.pid', 'w').write(str(os.getpid())); time.sleep(60)"
    script = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(60)"
    with pytest.raises(TargetError, match="took longer than 2 s; stopped"):
        device.run([device.python, "-c", script], timeout=2)
    assert time.monotonic() - started < 20
    assert not alive(int((device.root / "child.pid").read_text()))



def test_a_device_that_floods_its_output_is_refused_not_held(device: LocalDevice) -> None:
    flood = f"import sys; sys.stdout.buffer.write(b'x' * {MAX_OUTPUT + 1})"
    with pytest.raises(TargetError, match="more than the 16,777,216 kept"):
        device.run([sys.executable, "-c", flood])


def test_target_run_with_a_format_the_run_lacks_exits_2_before_the_device_is_contacted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "run_a8fda90", run)
    contacted: list[TargetSpec] = []
    monkeypatch.setattr(remote_run, "open_device", lambda spec: contacted.append(spec))  # records, never connects
    code = main(["target", "run", str(run), "emulated:cortex-a72", "--formats", "tflite-int8,tflite-int9"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--formats: tflite-int9: not in the manifest; it holds tflite-fp32, tflite-fp16, tflite-dynamic" in err
    assert contacted == [] and not (run / "devices").exists()

"""The device probe: runtime/probe.py runs as a bare file on a Python with nothing installed, its answer is
validated strictly on the host (a malformed, huge or hostile one is a TargetError), and
``cllnn-export target probe`` prints and writes it without loading TensorFlow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from export.cli.main import main
from export.errors import TargetError
from export.targets.local import LocalDevice
from export.targets.probe import MAX_PROBE_BYTES, PROBE_FILES, parse_probe, probe
from export.targets.spec import parse_target
from runtime.machine import cpu_info
from runtime.probe import RUNTIMES, installed_version


def _bare_probe(tmp_path: Path) -> dict[str, Any]:
    """probe.py and machine.py alone in a directory, run by a Python without its site-packages (-S -I):
    what a device with nothing installed answers."""
    for file in PROBE_FILES:
        shutil.copy(file, tmp_path / file.name)
    done = subprocess.run([sys.executable, "-S", "-I", "probe.py"], cwd=tmp_path, capture_output=True, check=True)
    return json.loads(done.stdout)


def test_the_probe_runs_as_a_bare_file_with_nothing_installed(tmp_path: Path) -> None:
    answer = _bare_probe(tmp_path)
    assert answer["packages"] == dict.fromkeys(RUNTIMES)  # nothing found: -S hides site-packages
    assert answer["cpu"]["cpu_class"] == cpu_info().cpu_class and answer["directory"] == str(tmp_path)
    facts = parse_probe(json.dumps(answer).encode(), "local")
    assert facts.python == ".".join(map(str, sys.version_info[:3])) and facts.disk_free_bytes > 0


def test_the_local_probe_finds_the_runtimes_installed_here(tmp_path: Path) -> None:
    facts = probe(LocalDevice(parse_target("local"), tmp_path / "device"))
    assert facts.packages == {name: installed_version(name) for name in RUNTIMES}
    assert facts.packages["numpy"] is not None and facts.cpu == cpu_info()
    assert sorted(p.name for p in (tmp_path / "device" / "probe").iterdir()) == ["machine.py", "probe.py"]


def _answer(tmp_path: Path, **changes: Any) -> bytes:
    answer = _bare_probe(tmp_path)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        place = answer
        for key in parents:
            place = place[key]
        place[last] = value
    return json.dumps(answer).encode()


@pytest.mark.parametrize(("changes", "named"), [
    ({"python__version": "3.11; rm -rf /"}, "does not match the probe's schema"),
    ({"packages__numpy": ["2.4"]}, "does not match the probe's schema"),
    ({"packages__evil": "1.0"}, "does not match the probe's schema"),  # a closed object
    ({"disk_free_bytes": -1}, "does not match the probe's schema"),
    ({"cpu__cpu": "x" * 10_000}, "does not match the probe's schema"),
    ({"probe_version": 99}, "does not match the probe's schema"),
    ({"target": "ssh://elsewhere"}, "names another target"),
])
def test_a_malformed_answer_is_refused(tmp_path: Path, changes: dict[str, Any], named: str) -> None:
    with pytest.raises(TargetError, match=f"^target local: the probe's answer {named}"):
        parse_probe(_answer(tmp_path, **changes), "local")


@pytest.mark.parametrize(("raw", "named"), [
    (b"x" * (MAX_PROBE_BYTES + 1), "is 65,537 bytes, more than the 65,536 a probe writes"),
    (b"[" * 60_000, "is nested deeper than 4 levels"),
    (b"\xff\xfe{}", "is not UTF-8"),
    (b'{"a": 1} {"b": 2}', "is not one JSON object"),
    (b"1" * 5000, "is not one JSON object"),  # more digits than int() takes
    (b"[]", "does not match the probe's schema"),
])
def test_a_hostile_answer_is_refused_before_it_is_parsed(raw: bytes, named: str) -> None:
    with pytest.raises(TargetError, match=named):
        parse_probe(raw, "local")


def test_target_probe_prints_and_writes_the_facts(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # local's working directory
    assert main(["target", "probe", "local", "--json", str(tmp_path / "probe.json")]) == 0
    printed = capsys.readouterr().out
    assert f"CPU class {cpu_info().cpu_class}" in printed and "numpy " in printed
    written = json.loads((tmp_path / "probe.json").read_text())
    assert written["target"] == "local"
    assert written["directory"] == str(tmp_path / "cache" / "cllnn-edge" / "local-device")
    assert parse_probe((tmp_path / "probe.json").read_bytes(), "local").to_dict() == written


@pytest.mark.parametrize(("argv", "named"), [
    (["target", "probe", "ssh://-oProxyCommand=x"], "is not one this toolkit drives"),
    (["target", "probe", "ssh://nobody@127.0.0.1:1"], "unreachable: nobody@127.0.0.1:1: the connection was refused"),
    (["target", "probe", "local", "--json", "/nonexistent/dir/p.json"], "--json /nonexistent/dir/p.json cannot be"),
])
def test_target_probe_refuses_what_it_cannot_use_with_exit_2(argv: list[str], named: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert named in capsys.readouterr().err


def test_target_probe_help_loads_no_tensorflow() -> None:
    script = ("import sys, contextlib, io\nfrom export.cli.main import main\n"
              "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
              "    main(['target', 'probe', '--help'])\n"
              "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnx') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert done.stdout.strip() == "[]"

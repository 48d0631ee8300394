"""cllnn-export target run on the local target: the a8fda90 run's files bundled, sent, installed in an
environment of their own, verified, timed and chosen there through the device's own cllnn-bench, and
the results brought back into devices/NAME/; a re-run sends nothing; a hostile answer is refused."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path, PurePosixPath

import pytest

import export.targets.remote_run as remote_run
from export.cli.main import main
from export.errors import TargetError
from export.targets.local import LocalDevice
from export.layout import RunLayout
from export.report.build import write_report
from export.targets.probe import probe
from export.targets.remote_run import run_on_target
from export.targets.results import RESULT_FILES, read_device
from export.targets.runtime_pin import USE_DEVICE_RUNTIME
from export.targets.spec import parse_target
from runtime.artifacts.manifest import load_manifest
from runtime.checks.verify import verify
from runtime.deploy.choose import SELECTION_NAME

FIXTURE = Path(__file__).parents[1] / "fixtures" / "run_a8fda90"
pytestmark = pytest.mark.slow  # a bundle installed into a fresh environment (~30 s; its wheels downloaded once)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("target") / "run"
    shutil.copytree(FIXTURE, run)
    return run


def test_a_local_target_run_brings_back_the_device_verdicts_timings_and_choice(
        run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["target", "run", str(run_dir), "local", "--name", "box"]) == 0
    out = capsys.readouterr().out
    device = run_dir / "devices" / "box"
    assert sorted(p.name for p in device.iterdir()) == sorted(RESULT_FILES)
    there = json.loads((device / "verify.json").read_text())
    here = verify(run_dir / "artifacts")
    assert {r["file"]: r["passed"] for r in there["results"]} == {r.file: r.passed for r in here.results}
    timed = {Path(r["model"]).name for r in json.loads((device / "bench.json").read_text())["results"]}
    assert timed == {r.file for r in here.results}
    chosen = json.loads((device / SELECTION_NAME).read_text())["chosen"]  # the chosen file's name
    assert chosen in {r.file for r in here.results if r.passed}
    assert f"chosen there: {chosen}" in out
    assert json.loads((device / "target.json").read_text())["emulated"] is False


def test_a_second_run_sends_nothing_and_replaces_the_results_whole(run_dir: Path) -> None:
    again = run_on_target(run_dir, parse_target("local"), "box")
    assert again.sent == 0 and again.selection is not None
    assert not [p for p in (run_dir / "devices").iterdir() if p.name.startswith(".")]  # no staging left


ASKED = ("tflite-int8", "tflite-dynamic", "tflite-fp32")


def test_a_target_run_with_formats_verifies_times_and_considers_only_those_there(
        run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--formats``: the bundle is the same (every file, the manifest whole: nothing new is sent), and the
    device's verify, bench and select take the three files asked, with the host's verdicts for them."""
    assert main(["target", "run", str(run_dir), "local", "--name", "some", "--formats", ",".join(ASKED)]) == 0
    out = capsys.readouterr().out
    device = run_dir / "devices" / "some"
    files = {"cllnn_int8.tflite", "cllnn_dynamic.tflite", "cllnn_fp32.tflite"}
    there = json.loads((device / "verify.json").read_text())
    assert there["formats"] == list(ASKED)
    assert {r["file"] for r in there["results"]} | {s["file"] for s in there["skipped"]} == files
    here = verify(run_dir / "artifacts", formats=ASKED)
    assert {r["file"]: r["passed"] for r in there["results"]} == {r.file: r.passed for r in here.results}
    timed = {Path(r["model"]).name for r in json.loads((device / "bench.json").read_text())["results"]}
    assert timed == {r["file"] for r in there["results"]}
    selection = json.loads((device / SELECTION_NAME).read_text())
    assert selection["formats"] == list(ASKED) and {c["file"] for c in selection["candidates"]} <= files
    assert json.loads((device / "target.json").read_text())["formats"] == list(ASKED)
    assert "verify (3 files of tflite-int8, tflite-dynamic, tflite-fp32)" in out
    assert "sent [" not in out  # the bundle the first run sent holds every file already
    assert read_device(device, load_manifest(run_dir / "artifacts")).formats == ASKED


def test_the_report_shows_the_device_beside_this_machine(run_dir: Path) -> None:
    device = read_device(run_dir / "devices" / "box", load_manifest(run_dir / "artifacts"))
    data = {"source": "embedded", "train": 3600, "val": 400, "test": 1000, "image_shape": [28, 28, 1],
            "classes": 10, "fingerprint": "f42bb758316a"}
    report = write_report(RunLayout(run_dir), {}, data)
    host, box, some = report["devices"]
    assert some["formats"] == list(ASKED) and some["parity"]["verified"] == 3
    assert host["role"] == "host" and box["name"] == "box" and box["target"] == "local"
    assert box["chosen"] == device.chosen.file and box["cpu_class"] == device.facts.cpu.cpu_class
    assert box["parity"] == {"passed": sum(r.passed for r in device.verify.results),
                             "verified": len(device.verify.results)}
    markdown = (run_dir / "report.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| box | local |"))
    assert device.chosen.file in row and f"{device.chosen.p50_us:,.0f}" in row
    assert "### Device box (local)" in markdown
    assert "<h3>Device box (local)</h3>" in (run_dir / "report.html").read_text()


class _HostileDevice(LocalDevice):
    """A device whose cllnn-bench answers are not what it should send back."""

    def get(self, remote: PurePosixPath, local: Path, *, max_bytes: int) -> None:
        local.write_text('["not", "a", "report"]')


def test_a_malformed_answer_is_refused_and_leaves_no_results(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote_run, "open_device", lambda spec: _HostileDevice(spec, run_dir.parent / "hostile"))
    with pytest.raises(TargetError, match="verify's verify.json: the top level: expected a parity report"):
        run_on_target(run_dir, parse_target("local"), "evil")
    assert not (run_dir / "devices" / "evil").exists()


TFLITE_RUNTIME_PIN = "tflite-runtime==2.14"
LOCAL_PYTHON = sys.version_info[:2]  # the local target's Python is the one running the host


@pytest.mark.skipif(LOCAL_PYTHON > (3, 11), reason=f"tflite-runtime 2.14 has wheels for CPython <= 3.11 only; the "
                    f"local target runs {LOCAL_PYTHON[0]}.{LOCAL_PYTHON[1]} (/usr/bin/python3.11 is the one here)")
def test_a_run_pinned_to_tflite_runtime_214_skips_what_it_cannot_load_and_never_chooses_it(
        run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As production on a board image that pins tflite-runtime 2.14: the bundle brings it (and NumPy
    1.x, which it needs), the device's verify, bench and select run on it; the dynamic-range and int16x8
    files are skipped with the op named, and select chooses among the rest, saying why."""
    assert main(["target", "run", str(run_dir), "local", "--name", "old", "--runtime", TFLITE_RUNTIME_PIN]) == 0
    out = capsys.readouterr().out
    device = run_dir / "devices" / "old"
    assert json.loads((device / "target.json").read_text())["runtime"] == {
        "package": "tflite-runtime", "version": "2.14", "from": "--runtime"}
    assert "with tflite-runtime==2.14 (--runtime)" in out
    there = json.loads((device / "verify.json").read_text())
    assert there["versions"]["tflite-runtime"] == "2.14.0" and there["versions"]["numpy"].startswith("1.")
    skipped = {s["file"]: s["reason"] for s in there["skipped"]}
    assert "FULLY_CONNECTED v12" in skipped["cllnn_dynamic.tflite"], skipped
    assert "tflite-runtime 2.14.0" in skipped["cllnn_dynamic.tflite"], skipped
    assert "QUANTIZE" in skipped["cllnn_int16x8.tflite"], skipped
    compared = {r["file"] for r in there["results"]}
    assert {"cllnn_fp32.tflite", "cllnn_fp16.tflite", "cllnn_int8.tflite"} <= compared
    assert not compared & set(skipped)
    timed = {Path(r["model"]).name for r in json.loads((device / "bench.json").read_text())["results"]}
    assert timed == compared
    selection = json.loads((device / SELECTION_NAME).read_text())
    assert selection["chosen"] not in skipped and selection["chosen"] in compared
    said = {s["file"]: s["reason"] for s in selection["skipped"]}
    assert "FULLY_CONNECTED v12" in said["cllnn_dynamic.tflite"] and "QUANTIZE" in said["cllnn_int16x8.tflite"]


def test_the_device_runtime_is_pinned_as_the_probe_found_it(run_dir: Path) -> None:
    """--use-device-runtime: the local target's Python has ai-edge-litert, so that release is pinned, the
    device's cllnn-bench runs on it, and target.json says where the pin came from."""
    found = probe(LocalDevice(parse_target("local"), run_dir.parent / "probe")).packages
    done = run_on_target(run_dir, parse_target("local"), "mine", runtime=USE_DEVICE_RUNTIME)
    assert done.runtime is not None and found["ai-edge-litert"] and not found["tflite-runtime"]
    assert (done.runtime.requirement, done.runtime.origin) == (f"ai-edge-litert=={found['ai-edge-litert']}",
                                                              "--use-device-runtime")
    assert json.loads((done.directory / "target.json").read_text())["runtime"]["from"] == "--use-device-runtime"
    assert done.verify.versions["ai-edge-litert"] == found["ai-edge-litert"]

"""A device's results directory, RUN_DIR/devices/NAME/, read as strictly as a manifest, and the report's
device part built from it.

The directory is real output: the a8fda90 run's files verified, timed and chosen on this machine by
cllnn-bench (verify, bench, select, as a device runs them), probed by the real probe on the local
target, and written by ``target run``'s own writer (``remote_run._place``). Each bad directory is that
one damaged in one way. tests/export/test_target_run.py checks the same on a real ``target run``."""

from __future__ import annotations

import dataclasses
import html
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from export.errors import TargetError
from export.layout import RunLayout
from export.report.build import write_report
from export.report.devices import EMULATED_CHOICE, EMULATED_NOTE, UNREADABLE
from export.targets import remote_run
from export.targets.local import LocalDevice
from export.targets.probe import probe
from export.targets.results import MAX_RESULT_BYTES, read_device, read_devices
from export.targets.spec import parse_target
from runtime.artifacts.manifest import load_manifest
from runtime.bench.latency import BenchReport
from runtime.checks.parity import ParityReport
from runtime.deploy.choose import Selection
from tests.export.test_report_page import _measure
from tests.runtime.test_compat import RUNS_OLD, _run_old, tflite_runtime_214  # noqa: F401 (a fixture)
from tests.runtime.helpers import describe

FIXTURE = Path(__file__).parents[1] / "fixtures" / "run_a8fda90"
DATA = {"source": "embedded", "train": 3600, "val": 400, "test": 1000, "image_shape": [28, 28, 1],
        "classes": 10, "fingerprint": "f42bb758316a"}
FAST = ("--runs", "20", "--warmup", "2")


def _bench(*argv: str) -> None:
    done = subprocess.run([sys.executable, "-m", "runtime.cli.main", *argv], capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stdout + done.stderr  # verify: 1, the fixture's int8 files fail


@pytest.fixture(scope="module")
def host_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, remote_run.DeviceRun]:
    """A copy of the a8fda90 run with devices/box/ written from this machine's own cllnn-bench results."""
    base = tmp_path_factory.mktemp("devices")
    run, out = base / "run", base / "out"
    shutil.copytree(FIXTURE, run)
    out.mkdir()
    _bench("verify", str(run / "artifacts"), "--json", str(out / "verify.json"))
    verify = ParityReport.load_json(out / "verify.json")
    _bench(*(str(run / "artifacts" / r.file) for r in verify.results), *FAST, "--json", str(out / "bench.json"))
    _bench("select", str(run / "artifacts"), "--out", str(out / "deploy"), *FAST)
    facts = probe(LocalDevice(parse_target("local"), base / "device"))
    layout = RunLayout(run)
    device = remote_run.DeviceRun("box", "local", False, layout.device("box"), facts, verify,
                                  BenchReport.load_json(out / "bench.json"),
                                  Selection.load_json(out / "deploy" / "selection.json"), sent=0)
    remote_run._place(device, load_manifest(layout.manifest))
    return run, device


@pytest.fixture()
def box(host_run: tuple[Path, remote_run.DeviceRun], tmp_path: Path) -> Path:
    """A copy of the good device directory, to damage."""
    copy = tmp_path / "devices" / "box"
    shutil.copytree(host_run[0] / "devices" / "box", copy)
    return copy


def test_the_directory_target_run_writes_reads_back_whole(host_run: tuple[Path, remote_run.DeviceRun]) -> None:
    run, written = host_run
    read = read_device(run / "devices" / "box", load_manifest(run / "artifacts"))
    assert (read.name, read.target, read.emulated) == ("box", "local", False)
    assert read.verify == written.verify and read.bench == written.bench and read.selection == written.selection
    assert read.facts == written.facts
    assert read.chosen is not None and read.chosen.file in {r.file for r in read.verify.results if r.passed}


def _edit(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        data = json.loads((directory / name).read_text())
        change(data)
        (directory / name).write_text(json.dumps(data))
    return damage


def _write(name: str, text: str | bytes) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        path = directory / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return damage


def _first_passed(data: dict) -> dict:
    return next(r for r in data["results"] if r["passed"])


def _symlink(directory: Path) -> None:
    (directory / "bench.json").rename(directory.parent / "elsewhere.json")
    (directory / "bench.json").symlink_to(directory.parent / "elsewhere.json")


def _linked_directory(directory: Path) -> None:
    directory.rename(directory.parent / "real")
    directory.symlink_to(directory.parent / "real")


def _huge(directory: Path) -> None:
    data = (directory / "verify.json").read_text()
    (directory / "verify.json").write_text(data[:-1] + " " * MAX_RESULT_BYTES + "}")


def _other_chosen(data: dict) -> None:
    failed = next(c for c in data["candidates"] if not c["verified"])
    for candidate in data["candidates"]:
        candidate["chosen"] = candidate is failed
    data["chosen"] = failed["file"]


DAMAGES = {
    "emulated but chose": (_edit("target.json", lambda d: d.update(target="emulated:cortex-a76", emulated=True,
                                                                   timings="emulated: not a real board's")),
                           ["selection.json: present", "target.json says emulated"]),
    "real but no choice": (lambda d: (d / "selection.json").unlink(), ["lacks selection.json"]),
    "name differs": (_edit("target.json", lambda d: d.update(name="other")), ["target.json: name: 'other'"]),
    "emulated flag lies": (_edit("target.json", lambda d: d.update(emulated=True,
                                                                   timings="emulated: not a real board's")),
                           ["target.json: emulated: True", "'local' is not an emulated one"]),
    "no such target": (_edit("target.json", lambda d: d.update(target="ftp://box")), ["target.json: target:"]),
    "probe of another target": (_edit("probe.json", lambda d: d.update(target="ssh://elsewhere")),
                                ["probe.json", "names another target"]),
    "file not in the manifest": (_edit("verify.json", lambda d: d["results"][0].update(file="cllnn_other.tflite")),
                                 ["verify.json: results[0].file: 'cllnn_other.tflite' is not in the run's manifest"]),
    "path escaping": (_edit("verify.json", lambda d: d["results"][0].update(file="../../etc/passwd")),
                      ["verify.json: results[0].file: expected a plain name"]),
    "format differs": (_edit("verify.json", lambda d: d["skipped"].append(
        {"format": "onnx-fp32", "file": "cllnn_fp32.tflite", "precision": "float32", "reason": "x", "by": "table"})),
        ["verify.json: skipped[0].format: 'onnx-fp32'", "lists cllnn_fp32.tflite as 'tflite-fp32'"]),
    "passed lies": (_edit("verify.json", lambda d: d["results"][3].update(passed=not d["results"][3]["passed"])),
                    ["verify.json: results[3].passed"]),
    "unknown field": (_edit("bench.json", lambda d: d["results"][1].update(extra=1)),
                      ["bench.json: results[1]: unknown field(s) extra"]),
    "wrong type": (_edit("selection.json", lambda d: d["candidates"][2].update(p50_us="fast")),
                   ["selection.json: candidates[2].p50_us: expected a number or null, got a string 'fast'"]),
    "timed what verify did not load": (_edit("bench.json", lambda d: d["results"][0].update(model="/x/cllnn_x.tflite")),
                                       ["bench.json: results[0].model: cllnn_x.tflite is not one verify loaded"]),
    "chose a failing file": (_edit("selection.json", _other_chosen),
                             ["selection.json: chosen:", "did not pass verify"]),
    "another machine's timings": (_edit("bench.json", lambda d: d["machine"].update(cpu_class="arm64 dotprod")),
                                  ["bench.json: machine: measured on CPU class arm64 dotprod"]),
    "not JSON": (_write("verify.json", '{"results": ['), ["verify.json: not valid JSON"]),
    "not an object": (_write("bench.json", '["not", "a", "report"]'),
                      ["bench.json: the top level: expected a benchmark report"]),
    "not UTF-8": (_write("selection.json", b'{"tool": "\xff"}'), ["selection.json: not UTF-8"]),
    "nested deep": (_edit("verify.json", lambda d: d.update(reference_confusion=[[[[[[[0]]]]]]])),
                    ["verify.json: nested more than 6 levels"]),
    "huge": (_huge, ["verify.json:", "bytes, more than the 8,388,608 a result file may be"]),
    "stray file": (_write("notes.txt", "hello"), ["notes.txt: not a result file"]),
    "symlink": (_symlink, ["bench.json: cannot open it as a regular file"]),
    "symlinked directory": (_linked_directory, ["box: a symlink, not a device's directory"]),
    "a file missing": (lambda d: (d / "bench.json").unlink(), ["lacks bench.json"]),
    "a file of the run neither verified nor skipped": (
        _edit("verify.json", lambda d: d.update(results=d["results"][1:])),
        ["verify.json: cllnn_fp32.tflite: neither verified nor skipped"]),
    "verify given other formats than target.json says": (
        _edit("verify.json", lambda d: d.update(formats=["tflite-fp32"])),
        ["verify.json: formats: tflite-fp32, but", "target.json says every format was asked"]),
    "select given other formats than target.json says": (
        _edit("selection.json", lambda d: d.update(formats=["tflite-fp32"])),
        ["selection.json: formats: tflite-fp32, but"]),
    "asked for a format the run lacks": (
        lambda d: [_edit(name, lambda data: data.update(formats=["tflite-int9"]))(d)
                   for name in ("target.json", "verify.json", "selection.json")],
        ["target.json: formats: tflite-int9: not in the manifest"]),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_device_directory_is_refused_naming_the_file_and_field(
        damage: str, box: Path, host_run: tuple[Path, remote_run.DeviceRun]) -> None:
    change, expected = DAMAGES[damage]
    read_device(box, load_manifest(host_run[0] / "artifacts"))  # the copy reads before it is damaged
    change(box)
    with pytest.raises(TargetError) as refused:
        read_device(box, load_manifest(host_run[0] / "artifacts"))
    for part in expected:
        assert part in str(refused.value)


def test_target_run_places_nothing_the_reader_refuses(host_run: tuple[Path, remote_run.DeviceRun],
                                                        tmp_path: Path) -> None:
    run, written = tmp_path / "run", host_run[1]
    shutil.copytree(host_run[0], run, symlinks=True)
    shutil.rmtree(run / "devices")
    stray = dataclasses.replace(written.verify.results[0], file="cllnn_other.tflite")
    bad = dataclasses.replace(written, directory=RunLayout(run).device("box"),
                              verify=dataclasses.replace(written.verify, results=(stray, *written.verify.results[1:])))
    with pytest.raises(TargetError, match="results\\[0\\].file: 'cllnn_other.tflite' is not in the run's manifest"):
        remote_run._place(bad, load_manifest(RunLayout(run).manifest))
    assert list((run / "devices").iterdir()) == []  # no devices/box, no staging left


@pytest.fixture(scope="module")
def report_run(host_run: tuple[Path, remote_run.DeviceRun], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run with three devices: box (real), a76 (box's results written as an emulated device's:
    target.json says so, no selection) and broken (box's, with a verify.json naming a file the run lacks)."""
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(host_run[0], run)
    layout, written = RunLayout(run), host_run[1]
    target = "emulated:cortex-a76"
    remote_run._place(dataclasses.replace(written, name="a76", target=target, emulated=True, selection=None,
                                          directory=layout.device("a76"),
                                          facts=dataclasses.replace(written.facts, target=target)),
                      load_manifest(layout.manifest))
    shutil.copytree(layout.device("box"), layout.device("broken"))
    (layout.device("broken") / "target.json").write_text(json.dumps(
        {**json.loads((layout.device("box") / "target.json").read_text()), "name": "broken"}))
    _edit("verify.json", lambda d: d["results"][0].update(file="cllnn_other.tflite"))(layout.device("broken"))
    write_report(layout, {}, DATA)
    return run


def test_the_report_shows_each_device_beside_this_machine(report_run: Path) -> None:
    report = json.loads((report_run / "report.json").read_text())
    entries = report["devices"]
    assert [e["name"] for e in entries] == ["host", "a76", "box", "broken"]
    host, a76, box, broken = entries
    selection = json.loads((report_run / "devices" / "box" / "selection.json").read_text())
    assert host["chosen"] == json.loads((report_run / "selection.json").read_text())["chosen"]
    assert box["chosen"] == selection["chosen"] and box["target"] == "local"
    probed = json.loads((report_run / "devices" / "box" / "probe.json").read_text())
    assert box["cpu_class"] == probed["cpu"]["cpu_class"]
    assert box["parity"] == {"passed": 5, "verified": 8}  # the fixture's three int8 files fail, there as here
    assert a76["emulated"] and a76["chosen"] is None and a76["timings"] == "emulated"
    assert all(f["p50_us"] > 0 for f in a76["files"])  # its timings are shown
    assert "cllnn_other.tflite" in broken["error"] and "verify.json" in broken["error"]
    markdown = (report_run / "report.md").read_text()
    table = markdown.split("## Devices")[1].split("###")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")][2:]  # after the header and its rule
    assert [row.split(" | ")[0] for row in rows] == ["| host", "| a76 (emulated)", "| box", "| broken"]
    assert EMULATED_CHOICE in rows[1] and selection["chosen"] in rows[2] and UNREADABLE in rows[3]
    assert "### Device box (local)" in markdown and EMULATED_NOTE in markdown
    assert "p50 us (emulated)" in markdown and "p50 us (bench there)" in markdown
    page = (report_run / "report.html").read_text()
    assert "<h2 id='devices'>Devices</h2>" in page and "Device broken: results could not be read" in page


CLI = "import runtime.cli.main as cli; sys.exit(cli.main(sys.argv[1:]))"


def test_a_device_with_only_tflite_runtime_214_says_which_files_it_could_not_load_and_why(
        host_run: tuple[Path, remote_run.DeviceRun], tflite_runtime_214: Path, tmp_path: Path) -> None:
    """A device whose only runtime is tflite-runtime 2.14 (the real wheel, no LiteRT, no ONNX Runtime):
    its own verify skips five files with the reason, bench times the three it loads, select chooses
    among them; the report names each skipped file and why, in the table and the device's section."""
    run, out, written = tmp_path / "run", tmp_path / "out", host_run[1]
    shutil.copytree(host_run[0], run)
    out.mkdir()
    for argv in (["verify", str(run / "artifacts"), "--json", str(out / "verify.json")],
                 [*(str(run / "artifacts" / f) for f in RUNS_OLD), *FAST, "--json", str(out / "bench.json")],
                 ["select", str(run / "artifacts"), "--out", str(out / "deploy"), *FAST]):
        done = _run_old(tflite_runtime_214, CLI, *argv)
        assert done.returncode in (0, 1), describe(done)
    layout = RunLayout(run)
    remote_run._place(dataclasses.replace(
        written, name="pi", directory=layout.device("pi"), verify=ParityReport.load_json(out / "verify.json"),
        bench=BenchReport.load_json(out / "bench.json"),
        selection=Selection.load_json(out / "deploy" / "selection.json")), load_manifest(layout.manifest))
    found = dict(read_devices(layout, load_manifest(run / "artifacts")))
    skipped = {s.file: s.reason for s in found["pi"].verify.skipped}
    assert set(skipped) == {"cllnn_dynamic.tflite", "cllnn_int16x8.tflite", "cllnn_fp32.onnx", "cllnn_int8.onnx",
                            "cllnn_tflm_int8.tflite"}
    report = write_report(layout, {}, DATA)
    pi = next(e for e in report["devices"] if e["name"] == "pi")
    assert pi["runtimes"]["tflite-runtime"] == "2.14.0" and "ai-edge-litert" not in pi["runtimes"]
    assert pi["chosen"] is None or pi["chosen"] in RUNS_OLD
    markdown = (run / "report.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| pi |"))
    assert f"cllnn_dynamic.tflite: {skipped['cllnn_dynamic.tflite']}" in row and "tflite-runtime 2.14.0" in row
    assert "FULLY_CONNECTED v12" in row
    section = markdown.split("### Device pi (local)")[1]
    for file, reason in skipped.items():  # one item each, with the reason
        assert f"\n- {file} (" in section and reason in section
    page = (run / "report.html").read_text()
    assert f"<li>cllnn_dynamic.tflite (tflite-dynamic): {html.escape(skipped['cllnn_dynamic.tflite'])}</li>" in page
    compared = found["pi"].verify.results
    assert {r.file for r in compared} == RUNS_OLD
    assert f"Verify there: {sum(r.passed for r in compared)} of 3 files pass" in section


@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_with_devices_does_not_scroll_sideways(report_run: Path, tmp_path: Path, width: int) -> None:
    page = tmp_path / "report.html"
    shutil.copy(report_run / "report.html", page)
    scroll, body, window = _measure(page, width)
    assert window == width
    assert body <= window and scroll <= window, (scroll, body, window)


ASKED = "tflite-int8,tflite-dynamic,tflite-fp32"


def test_a_device_given_some_formats_names_them_and_the_report_says_how_many_of_the_runs(
        host_run: tuple[Path, remote_run.DeviceRun], tmp_path: Path) -> None:
    """As ``target run --formats``: the device's own verify and select given three formats (bench the files
    verify loaded); the directory reads back with them, a verify that left one of them out is refused, and
    the report shows "3 of 8 formats asked" rather than five files missing."""
    run, out = tmp_path / "run", tmp_path / "out"
    shutil.copytree(host_run[0], run)
    shutil.rmtree(run / "devices")
    out.mkdir()
    _bench("verify", str(run / "artifacts"), "--formats", ASKED, "--json", str(out / "verify.json"))
    verify = ParityReport.load_json(out / "verify.json")
    _bench(*(str(run / "artifacts" / r.file) for r in verify.results), *FAST, "--json", str(out / "bench.json"))
    _bench("select", str(run / "artifacts"), "--formats", ASKED, "--out", str(out / "deploy"), *FAST)
    layout = RunLayout(run)
    device = dataclasses.replace(host_run[1], name="pi", directory=layout.device("pi"), verify=verify,
                                 bench=BenchReport.load_json(out / "bench.json"),
                                 selection=Selection.load_json(out / "deploy" / "selection.json"),
                                 formats=tuple(ASKED.split(",")))
    remote_run._place(device, load_manifest(layout.manifest))
    assert json.loads((layout.device("pi") / "target.json").read_text())["formats"] == ASKED.split(",")
    read = read_device(layout.device("pi"), load_manifest(layout.manifest))
    assert read.formats == tuple(ASKED.split(","))
    assert {r.file for r in read.verify.results} == {"cllnn_int8.tflite", "cllnn_dynamic.tflite", "cllnn_fp32.tflite"}
    assert {c.file for c in read.selection.candidates} == {r.file for r in read.verify.results}
    lost = dataclasses.replace(device, verify=dataclasses.replace(verify, results=verify.results[1:]))
    with pytest.raises(TargetError, match="verify.json: cllnn_fp32.tflite: neither verified nor skipped"):
        remote_run._place(lost, load_manifest(layout.manifest))
    assert read_device(layout.device("pi"), load_manifest(layout.manifest)).formats  # the good one stands
    report = write_report(layout, {}, DATA)
    (_, pi) = report["devices"]
    assert pi["formats"] == ASKED.split(",") and pi["formats_listed"] == 8
    assert pi["parity"]["verified"] == 3
    markdown = (run / "report.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| pi |"))
    assert "(verify; 3 of 8 formats asked)" in row
    assert ("3 of 8 formats asked there (tflite-int8, tflite-dynamic, tflite-fp32, target run --formats): the "
            "run's other files were not verified, timed or considered there, by choice.") in markdown
    assert "3 of 8 formats asked" in (run / "report.html").read_text()

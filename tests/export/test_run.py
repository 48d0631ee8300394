"""``run_pipeline`` on a tiny config: each costly thing is done once (the data is loaded once for
every stage, and the trained model runs once per image set for the equivalence proofs, every
format's checks and parity); the select stage chooses on this machine, the report opens with the
choice, and a re-run reuses it."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import pytest

import cllnn_edge.data
import cllnn_edge.sources
import runtime
from cllnn_edge.config import Config
from export.graph import reference
from export.layout import RunLayout
from export.pipeline.plan import Plan, resolve
from export.pipeline.run import RunState, run_pipeline
from runtime.deploy.choose import SELECTION_NAME, Selection
from runtime.machine import cpu_info
from runtime import loader
from runtime.artifacts import manifest as manifest_module
from runtime.artifacts import opened as opened_module
from runtime.artifacts.manifest import MANIFEST_NAME, load_manifest

pytestmark = pytest.mark.slow  # trains and converts a (tiny) model

TINY = {
    "model": {"conv_filters": [4, 8, 16], "reservoir_dim": 32, "lstm_units": 8},
    "train": {"epochs": 1},
    "export": {"formats": ["tflite-fp32", "tflite-int8"], "calibration_size": 50},
    # A one-epoch toy model: the quantized gates are opened; this test counts work, not accuracy.
    "tolerances": {"int8": {"min_top1": 0.0, "max_accuracy_drop": 1.0, "convert_min_top1": 0.0}},
}


class Opened(NamedTuple):
    """What one process did to the artefacts: manifests read (by path), files hashed from the bytes a
    load runs (by SHA-256), files loaded (by path)."""

    reads: Counter[str]
    hashes: Counter[str]
    loads: Counter[str]


@contextmanager
def counting_opens(patch: pytest.MonkeyPatch) -> Iterator[Opened]:
    """Count, on the real code path, the one manifest reader (``read_manifest_at``), the one hash of
    a file's bytes (``sha256_bytes``) and every load of a file into a backend (``loader._backend_model``)."""
    opened = Opened(Counter(), Counter(), Counter())
    real_read, real_hash, real_model = manifest_module.read_manifest_at, manifest_module.sha256_bytes, \
        loader._backend_model

    def read(location: Any, *args: Any, **kwargs: Any) -> Any:
        path, raw = real_read(location, *args, **kwargs)
        opened.reads[str(path)] += 1
        return path, raw

    def hashed(data: bytes) -> str:
        digest = real_hash(data)
        opened.hashes[digest] += 1
        return digest

    def model(file: Any, *args: Any) -> Any:
        opened.loads[str(file.path)] += 1
        return real_model(file, *args)

    for module in (manifest_module, opened_module):
        patch.setattr(module, "read_manifest_at", read)
        patch.setattr(module, "sha256_bytes", hashed)
    patch.setattr(loader, "_backend_model", model)
    yield opened


class CountedRun(NamedTuple):
    state: RunState
    loads: list[str]  # data sources loaded
    image_sets: Counter  # the trained model's image sets computed
    lines: list[str]  # progress lines
    opened: Opened


@pytest.fixture(scope="module")
def counted_run(tmp_path_factory: pytest.TempPathFactory) -> CountedRun:
    """The pipeline once, counting data loads, the trained model's image sets, manifest reads, file
    hashes and loads."""
    loads: list[str] = []
    real_load = cllnn_edge.data.load_splits

    def counted_load(source: str, **kwargs: object) -> cllnn_edge.data.Splits:
        loads.append(source)
        return real_load(source, **kwargs)

    image_sets: Counter[tuple[int, bytes]] = Counter()
    real_compute = reference.KerasRunner._compute

    def counted_compute(self: reference.KerasRunner, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.name.startswith("trained model"):
            image_sets[(len(batch), batch[:4].tobytes())] += 1
        return real_compute(self, batch)

    lines: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cllnn_edge.sources, "load_splits", counted_load)  # what --data resolves through
        patch.setattr(reference.KerasRunner, "_compute", counted_compute)
        with counting_opens(patch) as opened:
            state = run_pipeline(_plan(tmp_path_factory.mktemp("run") / "run"), progress=lines.append)
    return CountedRun(state, loads, image_sets, lines, opened)


def _by_file(opened: Opened, layout: RunLayout) -> dict[str, tuple[int, int]]:
    """(hashes of its bytes, loads) per listed artefact and probe of the run."""
    manifest = load_manifest(layout.manifest)
    listed = [(entry.file, entry.sha256) for entry in manifest.artifacts]
    listed += [(e.details.probe.file, e.details.probe.sha256) for e in manifest.artifacts
               if e.details.probe is not None and e.details.probe.file is not None]
    return {file: (opened.hashes[sha256], opened.loads[str(layout.artifacts / file)]) for file, sha256 in listed}


def test_one_run_reads_each_manifest_once_and_hashes_each_file_once_however_often_it_loads(counted_run) -> None:
    """Issue 25's acceptance, counted: convert's manifest is passed on (parity, bench, select, deploy and
    the report read no manifest.json), and every file is hashed once for all its loads."""
    state, opened = counted_run.state, counted_run.opened
    assert all(count == 1 for count in opened.reads.values()), opened.reads
    assert str(state.layout.manifest) not in opened.reads, opened.reads  # convert's, passed on
    per_file = _by_file(opened, state.layout)
    assert {file for file, _ in per_file.items() if file.startswith("probes/")}, per_file
    for file, (hashes, loads) in per_file.items():
        assert hashes == 1, (file, per_file)
        # an artefact: parity, select's verify and bench's two batch sizes; a probe: parity and verify
        assert loads >= (2 if file.startswith("probes/") else 4), (file, per_file)
    print(f"\nopened in one run: manifest reads {dict(opened.reads)}; (hashes, loads) per file {per_file}")


def test_a_rerun_that_reuses_every_stage_reads_the_manifest_once(counted_run) -> None:
    layout = counted_run.state.layout
    with pytest.MonkeyPatch.context() as patch, counting_opens(patch) as opened:
        again = run_pipeline(_plan(layout.root))
    assert not any(stage["ran"] for stage in again.stages.values()), again.stages
    assert opened.reads == Counter({str(layout.manifest): 1}), opened.reads  # for the report
    assert not opened.hashes and not opened.loads, opened


def _plan(out) -> Plan:
    """The tiny run's plan, as ``cllnn-export run --config tiny.toml --data embedded --out OUT`` makes it."""
    return resolve("run", config=Config.from_dict(TINY), data="embedded", out=out)


def test_run_loads_the_data_once_and_runs_the_trained_model_once_per_image_set(counted_run) -> None:
    state, loads, image_sets, lines = counted_run[:4]
    assert all(stage["ran"] for stage in state.stages.values()), state.stages
    assert list(state.stages) == ["train", "convert", "parity", "bench", "select"]
    assert loads == ["embedded"]
    # convert checks on the first check_size test images, parity on the whole test split: with the
    # embedded data both are the same 1,000 images, so one set, computed once for both stages
    assert list(image_sets.values()) == [1], image_sets
    assert "unroll: float-front int8 graph" in "\n".join(lines)  # both proofs ran on it


def test_select_deploys_the_choice_and_the_report_opens_with_it(counted_run) -> None:
    state, _, _, lines = counted_run[:4]
    layout = state.layout
    selection = Selection.load_json(layout.selection)
    chosen = selection.chosen
    assert chosen is not None, selection.verdict
    assert sorted(p.name for p in layout.deploy.iterdir()) == sorted([chosen.file, MANIFEST_NAME, SELECTION_NAME])
    assert json.loads((layout.deploy / SELECTION_NAME).read_text()) == selection.to_dict()
    assert [c.format for c in selection.candidates] == ["tflite-fp32", "tflite-int8"]
    assert all(c.verified for c in selection.candidates)  # the run's opened int8 gate, not the export's
    assert selection.tolerances["int8"]["min_top1"] == 0.0
    assert set(selection.budget.to_dict().values()) == {None} and selection.settings["runs"] == 200
    assert [a.file for a in load_manifest(layout.deploy).artifacts] == [chosen.file]
    with runtime.load(layout.deploy / chosen.file) as model:  # checked against the copied manifest
        assert model.predict(np.zeros((1, 28, 28), np.uint8)).shape == (1, 10)
    assert any(line.startswith("select: done in") and f"deploy/{chosen.file}" in line for line in lines)

    cpu_class = cpu_info().cpu_class
    opening = (f"Deploy on this machine ({cpu_class}): {chosen.file} — p50 {chosen.p50_us:,.0f} us, "
               f"accuracy {100 * chosen.accuracy:.1f}% (")
    markdown = layout.report_markdown.read_text().splitlines()
    assert markdown[0] == "# CLLNN deployment report" and markdown[2].startswith(f"**{opening}")
    assert markdown[2].endswith(f"{selection.verdict}**") and "points " in markdown[2]
    assert any(line.startswith("| deploy | " + chosen.file) for line in markdown)
    page = layout.report_html.read_text()
    body = page[page.index("<body>"):]
    assert body.index("<h1>") < body.index("id='deploy'>Deploy on this machine") < body.index("Parity ")
    assert json.loads(layout.report_json.read_text())["deploy"].startswith(opening)


def test_a_rerun_reuses_select_and_a_missing_deploy_redoes_it_alone(counted_run) -> None:
    state = counted_run.state
    layout: RunLayout = state.layout
    again = run_pipeline(_plan(layout.root))
    assert not any(stage["ran"] for stage in again.stages.values()), again.stages
    shutil.rmtree(layout.deploy)
    redone = run_pipeline(_plan(layout.root))
    assert [name for name, stage in redone.stages.items() if stage["ran"]] == ["select"], redone.stages
    chosen = Selection.load_json(layout.selection).chosen
    assert (layout.deploy / chosen.file).is_file()


def test_a_rerun_after_tampering_redoes_the_changed_stage_and_those_after_it(
    counted_run, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resume checks what it reuses against the checksums recorded when it was written."""
    from export.cli.main import main

    state = counted_run.state
    layout: RunLayout = state.layout
    model_mtime = layout.model.stat().st_mtime_ns
    tampered = layout.artifacts / "cllnn_int8.tflite"
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = bytes(b ^ 0xFF for b in data[len(data) // 2 : len(data) // 2 + 16])
    tampered.write_bytes(bytes(data))
    config = tmp_path / "tiny.toml"
    config.write_text(_toml(TINY))
    code = main(["run", "--config", str(config), "--out", str(layout.root)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "convert: artifacts/cllnn_int8.tflite changed since it was written (checksum); running again" in out
    assert "train: reused" in out and layout.model.stat().st_mtime_ns == model_mtime
    for stage in ("convert", "parity", "bench", "select"):
        assert f"{stage}: running" in out, stage
    assert out.rstrip().endswith("PASSED")
    with runtime.load(tampered) as model:  # rewritten, and its manifest checksum holds again
        assert model.predict(np.zeros((1, 28, 28), np.uint8)).shape == (1, 10)
    record = json.loads(layout.stage_record("convert").read_text())
    assert "artifacts/cllnn_int8.tflite" in record["files"] and "artifacts/manifest.json" in record["files"]


def _toml(tables: dict, prefix: str = "") -> str:
    """``tables`` (sections of scalars, lists and sub-sections) as TOML text."""
    values = [f"{key} = {json.dumps(value)}" for key, value in tables.items() if not isinstance(value, dict)]
    text = f"[{prefix}]\n" + "\n".join(values) + "\n" if prefix and values else ""
    for key, value in tables.items():
        if isinstance(value, dict):
            text += _toml(value, f"{prefix}.{key}" if prefix else key)
    return text


def test_a_manifest_spoiled_between_runs_is_written_again(
    counted_run, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest of the wrong shape on disk is never parsed for reuse: its checksum differs from the
    one recorded, so convert runs again and writes a good one."""
    from export.cli.main import main

    state = counted_run.state
    root = shutil.copytree(state.layout.root, tmp_path / "run")
    layout = RunLayout(root)
    document = json.loads(layout.manifest.read_text())
    document["artifacts"][1]["ops"] = []
    layout.manifest.write_text(json.dumps(document))
    config = tmp_path / "tiny.toml"
    config.write_text(_toml(TINY))
    code = main(["run", "--config", str(config), "--out", str(root)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "convert: artifacts/manifest.json changed since it was written (checksum); running again" in out
    assert json.loads(layout.manifest.read_text())["artifacts"][1]["ops"] != []


def test_run_with_targets_runs_each_device_after_select_and_one_that_fails_stops_neither_the_others_nor_the_report(
    counted_run, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run --target``: each device is one more stage after select (the host's stages reused); a device
    that cannot be reached is said, has no results, and makes the run exit 2 after the report; the one
    that answered has its verdicts in devices/NAME/ and is reused by a run that asks for it again."""
    from export.cli.main import main

    root = shutil.copytree(counted_run.state.layout.root, tmp_path / "run")
    layout = RunLayout(root)
    config = tmp_path / "tiny.toml"
    config.write_text(_toml(TINY))
    args = ["run", "--config", str(config), "--out", str(root)]
    code = main([*args, "--target", "gone=ssh://nobody@127.0.0.1:1", "--target", "box=local"])
    out = capsys.readouterr().out
    assert code == 2, out
    assert "device-gone: failed: target ssh://nobody@127.0.0.1:1: unreachable" in out, out
    assert not layout.device("gone").exists()
    verdicts = json.loads((layout.device("box") / "verify.json").read_text())
    assert {r["file"] for r in verdicts["results"]} == {e.file for e in load_manifest(layout.manifest).artifacts}
    chosen = Selection.load_json(layout.device("box") / SELECTION_NAME).chosen
    assert "device-box: done in" in out and f"chosen there: {chosen.file}" in out
    for stage in ("train", "convert", "parity", "bench", "select"):
        assert f"{stage}: reused" in out, stage
    assert layout.report_html.stat().st_mtime > layout.device("box").stat().st_mtime  # written after the devices

    assert main([*args, "--target", "box=local"]) == 0
    assert "device-box: reused" in capsys.readouterr().out

"""results.json keyed by CPU class, and RESULTS.md with one section per class: no ratio mixes classes.

Built from the measured file in the repository (benchmarks/results.json), so the renderers
see real sections; a second class is that run re-filed under another machine's record with
its batch-1 latencies halved, so any figure that mixed the two classes would show.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks import store
from benchmarks.__main__ import SECTIONS, main
from benchmarks.results import write_results
from benchmarks.targets import targets
from runtime.machine import CpuInfo

MEASURED = Path(__file__).parents[2] / "benchmarks" / "results.json"
UNKNOWN = "x86-64, ISA not recorded"
VNNI = CpuInfo(model="Intel(R) Xeon(R) Processor", arch="x86-64",
               isa=("fma", "avx2", "avx512f", "avx512_vnni", "avx_vnni"))


@pytest.fixture(scope="module")
def measured() -> dict[str, Any]:
    """The repository's file, with only its class of unrecorded ISA (the figures of the first layout)."""
    results = json.loads(MEASURED.read_text())
    return {**results, "classes": {UNKNOWN: results["classes"][UNKNOWN]}}


def first_layout(results: dict[str, Any]) -> dict[str, Any]:
    """The file as the suite wrote it before CPU classes: one run at the top, no ISA fields."""
    (run,) = copy.deepcopy(results["classes"]).values()
    for key in ("cpu_arch", "cpu_isa", "cpu_class"):
        del run["machine"][key]
    for section in run["sections"].values():
        del section["cpu"]
    del run["migrated"]
    return run


def on_another_class(run: dict[str, Any], cpu: CpuInfo, speedup: float) -> dict[str, Any]:
    """``run`` as if measured on ``cpu``, every batch-1 latency ``speedup`` times shorter."""
    other = copy.deepcopy(run)
    other.pop("migrated", None)
    other["machine"].update(cpu.record())
    for row in other["sections"]["inference"]["batch1"]["rows"].values():
        row["p50_us"] /= speedup
        row["p99_us"] /= speedup
    return other


def class_sections(text: str) -> dict[str, str]:
    """RESULTS.md's top-level CPU class sections, by class."""
    parts = re.split(r"^## CPU class: (.+)$", text, flags=re.M)
    return {name: body.split("\n## Reproducing")[0] for name, body in zip(parts[1::2], parts[2::2])}


def test_the_repository_file_is_migrated_and_honest_about_its_isa() -> None:
    results = json.loads(MEASURED.read_text())
    assert results["layout"] == store.LAYOUT and UNKNOWN in results["classes"]
    machine = results["classes"][UNKNOWN]["machine"]
    assert machine["cpu"] == "AMD EPYC" and machine["cpu_isa"] is None and machine["cpu_class"] == UNKNOWN
    for name, run in results["classes"].items():  # every other class was measured with its ISA recorded
        assert name == UNKNOWN or CpuInfo.from_record(run["machine"]).cpu_class == name
    assert store.migrate(results) is results


def test_the_first_layout_migrates_to_one_class_of_unrecorded_isa(measured: dict[str, Any]) -> None:
    old = first_layout(measured)
    assert "sections" in old and "layout" not in old
    assert store.migrate(old) == measured
    with pytest.raises(ValueError, match="not a results.json"):
        store.migrate({"results": []})


def test_render_works_on_a_file_of_the_first_layout(
    measured: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "results.json").write_text(json.dumps(first_layout(measured)))
    assert main(["--render", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert f"## CPU class: {UNKNOWN}" in text
    assert "**ISA not recorded: measured before the suite recorded" in text and "Machine: AMD EPYC," in text
    assert text.count("### Targets (issues 7 and 12)") == 1
    assert (tmp_path / "plots" / "x86-64-isa-not-recorded" / "batch.png").read_bytes()[:4] == b"\x89PNG"
    assert "layout" not in json.loads((tmp_path / "results.json").read_text())  # render measures and files nothing


def test_two_classes_render_two_sections_and_never_mix_ratios(measured: dict[str, Any], tmp_path: Path) -> None:
    unknown = measured["classes"][UNKNOWN]
    results = store.add_run(measured, on_another_class(unknown, VNNI, speedup=2.0), SECTIONS)
    assert set(results["classes"]) == {UNKNOWN, "x86-64 AVX-512 VNNI"}
    write_results(results, tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    sections = class_sections(text)
    assert list(sections) == ["x86-64 AVX-512 VNNI", UNKNOWN]  # a class of unrecorded ISA last
    assert sections["x86-64 AVX-512 VNNI"].startswith(
        "\n\n**ISA: fma avx2 avx512f avx512_vnni avx_vnni.** Machine: Intel(R) Xeon(R) Processor,")
    for name, body in sections.items():
        run = results["classes"][name]
        assert body.count("### Targets") == body.count("### 1. Inference") == 1
        int8_dot = CpuInfo.from_record(run["machine"]).int8_dot
        for target, value, _ in targets(run["sections"], int8_dot):  # each class's targets from its own figures
            assert f"| {target} | {value} |" in body
        floor = run["sections"]["floor"]["formats"]["tflite-int8"]["floor_us"]
        p50 = run["sections"]["inference"]["batch1"]["rows"]["runtime tflite-int8"]["p50_us"]
        assert f"| {p50 / floor:.1f}x |" in body  # p50 / floor, both of this class
        assert f"](plots/{'x86-64-avx-512-vnni' if 'VNNI' in name else 'x86-64-isa-not-recorded'}/batch.png)" in body
    floor = unknown["sections"]["floor"]["formats"]["tflite-int8"]["floor_us"]
    p50 = unknown["sections"]["inference"]["batch1"]["rows"]["runtime tflite-int8"]["p50_us"]
    assert f"{p50 / floor:.1f}x the floor" in sections[UNKNOWN]
    assert f"{p50 / 2 / floor:.1f}x the floor" in sections["x86-64 AVX-512 VNNI"]
    assert f"{p50 / floor:.1f}x the floor" not in sections["x86-64 AVX-512 VNNI"]


def test_a_run_replaces_only_its_own_class(measured: dict[str, Any]) -> None:
    unknown = measured["classes"][UNKNOWN]
    vnni = on_another_class(unknown, VNNI, speedup=2.0)
    vnni["sections"] = {name: {**section, "measured": "first"} for name, section in vnni["sections"].items()}
    results = store.add_run(measured, vnni, SECTIONS)
    assert results["classes"][UNKNOWN] == unknown and "migrated" not in results["classes"]["x86-64 AVX-512 VNNI"]

    subset = copy.deepcopy(vnni)
    subset["sections"] = {"inference": {**vnni["sections"]["inference"], "measured": "second"}}
    subset["command"] = "python -m benchmarks --sections inference"
    merged = store.add_run(results, subset, SECTIONS)["classes"]
    assert merged[UNKNOWN] == unknown
    assert {name: s["measured"] for name, s in merged["x86-64 AVX-512 VNNI"]["sections"].items()} == {
        "inference": "second", "floor": "first", "training": "first", "scaling": "first", "memory": "first"}
    assert merged["x86-64 AVX-512 VNNI"]["command"] == subset["command"]

    full = copy.deepcopy(subset)
    full["sections"] = {name: {"measured": "third"} for name in SECTIONS}
    replaced = store.add_run(results, full, SECTIONS)["classes"]["x86-64 AVX-512 VNNI"]
    assert {s["measured"] for s in replaced["sections"].values()} == {"third"}
    assert {s["cpu"] for s in replaced["sections"].values()} == {VNNI.model}


def test_sections_of_two_machines_in_one_class_name_their_cpu(measured: dict[str, Any], tmp_path: Path) -> None:
    """Within a class a subset run may sit beside another machine's sections: the header says whose."""
    unknown = measured["classes"][UNKNOWN]
    first = on_another_class(unknown, VNNI, speedup=1.0)
    second = copy.deepcopy(first)
    second["machine"]["cpu"] = "Intel(R) Xeon(R) Platinum 8480+"
    second["sections"] = {"memory": first["sections"]["memory"]}
    results = store.add_run(store.add_run(store.empty(), first, SECTIONS), second, SECTIONS)
    write_results(results, tmp_path)
    header = class_sections((tmp_path / "RESULTS.md").read_text())["x86-64 AVX-512 VNNI"].split("\n\n")[1]
    assert ", Intel(R) Xeon(R) Platinum 8480+)" in header and ", Intel(R) Xeon(R) Processor)" in header


def test_int8_targets_follow_the_class(measured: dict[str, Any]) -> None:
    """Issue 12: tflite-int8 <= 0.5x tflite-fp32 with int8 dot products, <= 0.8x without; onnx 0.8x on both."""
    batch1 = {"runtime tflite-int8": {"p50_us": 60.0}, "runtime tflite-fp32": {"p50_us": 100.0},
              "runtime onnx-int8": {"p50_us": 90.0}, "runtime onnx-fp32": {"p50_us": 100.0},
              **{name: {"p50_us": 1000.0} for name in ("seed-form Keras, model.predict",
                                                      "seed-form Keras, tf.function")}}
    sections = {"inference": {"batch1": {"rows": batch1}}}
    with_dot = {target: ok for target, _, ok in targets(sections, int8_dot=True)}
    without = {target: ok for target, _, ok in targets(sections, int8_dot=False)}
    unknown = {target for target, _, _ in targets(sections, int8_dot=None)}
    assert with_dot["tflite-int8 p50 <= 0.5x tflite-fp32"] is False
    assert without["tflite-int8 p50 <= 0.8x tflite-fp32"] is True
    assert with_dot["onnx-int8 p50 <= 0.8x onnx-fp32"] is False is without["onnx-int8 p50 <= 0.8x onnx-fp32"]
    assert not any(t.startswith("tflite-int8 p50 <=") for t in unknown)  # no class, no class-bound target
    assert VNNI.int8_dot and CpuInfo("EPYC", "x86-64", ("fma", "avx2")).int8_dot is False

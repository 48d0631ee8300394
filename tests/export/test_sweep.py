"""The precision sweep: its Pareto front, its --variants syntax, and one real sweep of a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cllnn_edge.config import Config
from cllnn_edge.data import Split, Splits, load_splits
from cllnn_edge.train import train
from export.cli.main import EXIT_OK, EXIT_USAGE, main
from export.errors import ExportError
from export.formats.registry import parse_formats
from export.report.build import _sweep_section, sweep_cells
from export.pipeline.variants import default_variants, parse_variants
from export.pipeline.sweep import (
    SWEEP_JSON,
    SWEEP_MD,
    SWEEP_PNG,
    SweepResult,
    SweepRow,
    pareto_front,
    table_rows,
    with_front,
    write_sweep,
)
from runtime.machine import cpu_info
from runtime.artifacts.manifest import load_manifest


def _row(name: str, disagreement: float | None, p50: float | None, size: float | None) -> SweepRow:
    """A row as a sweep measures it; ``disagreement``: 1 - top-1 agreement (None: not measured)."""
    agreement = None if disagreement is None else 1.0 - disagreement
    return SweepRow(name, f"{name}.tflite", "litert", "int8", None, None, size_kib=size, size_pct_fp32=None,
                    top1_agreement=agreement, accuracy_drop_pt=None if disagreement is None else -0.3,
                    max_abs=None, main_error_stage=None, parity_passed=True, p50_us=p50, p99_us=p50)


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(0.0, 100.0, 300.0),  # most accurate
              (0.5, 50.0, 100.0),  # fastest and smallest
              (0.6, 60.0, 120.0),  # beaten by the one above on every axis
              (0.5, 50.0, 100.0),  # equal to a front point: equal points are all on the front
              (0.1, 200.0, 90.0),  # smallest of all: on the front though slow
              None]  # not measured
    assert pareto_front(points) == [True, True, False, True, True, False]
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 1.0)]) == [True]


def test_with_front_ignores_unmeasured_rows_and_table_sorts_by_p50() -> None:
    """The front is over disagreement, p50 and size; a (chance) negative accuracy drop plays no part."""
    rows = with_front([_row("slow", 0.0, 300.0, 200.0), _row("fast", 0.002, 80.0, 60.0),
                       _row("beaten", 0.003, 90.0, 70.0), _row("failed", None, None, None)])
    assert {r.name: r.on_pareto_front for r in rows} == {"slow": True, "fast": True, "beaten": False,
                                                          "failed": False}
    cells = table_rows(rows)
    assert [c[0] for c in cells] == ["fast", "beaten", "slow", "failed"]  # by p50, unmeasured last
    assert [c[-1] for c in cells] == ["*", "", "*", ""]


def test_variant_syntax() -> None:
    chosen = parse_variants("tflite-fp32, tflite-mixed:cnn=float32;reservoir=int16x8,"
                            "onnx-mixed:reservoir=int16x8+lstm=float32,tflite-fp32")
    assert [f.name for f in chosen] == ["tflite-fp32", "tflite-mixed-f32-i16-i8-i8", "onnx-mixed-i8-i16-f32-i8"]
    mixed = chosen[1]
    assert mixed.file == "cllnn_mixed_f32-i16-i8-i8.tflite" and mixed.converter == "tflite-mixed"
    assert mixed.recipe is not None and mixed.recipe.stages["cnn"] == "float32"
    assert parse_variants("all") == parse_formats("all")
    defaults = default_variants()
    assert defaults[:len(parse_formats("all"))] == parse_formats("all")
    assert [f.name for f in defaults[len(parse_formats("all")):]] == [
        "tflite-mixed-i16-i16-i16-i16", "tflite-mixed-i16-i16-i8-i8", "tflite-mixed-f32-i8-i8-i8",
        "onnx-mixed-i16-i16-i8-i8"]
    assert parse_variants(None) == defaults
    assert len({f.file for f in defaults}) == len(defaults)  # one file each, in one directory


@pytest.mark.parametrize(("spec", "says"), [
    ("tflite-fp64", "unknown format 'tflite-fp64'"),
    ("tflite-fp32:cnn=float32", "fixed precision"),
    ("tflite-mixed", "needs a recipe"),
    ("tflite-mixed:cnn=int4", "unknown precision"),
    ("tflite-mixed:gpu=int8", "unknown stage"),
    ("tflite-mixed:cnn=float32,reservoir=int16x8", "unknown format 'reservoir=int16x8'"),  # "," splits variants
    (" , ", "names no variant"),
])
def test_bad_variants_are_refused_with_the_reason(spec: str, says: str) -> None:
    with pytest.raises(ExportError, match=says):
        parse_variants(spec)


def test_cli_refuses_bad_variants_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    code = main(["sweep", str(tmp_path / "absent.keras"), "--out", str(out), "--variants", "tflite-fp32,nope"])
    assert code == EXIT_USAGE
    assert "unknown format 'nope'" in capsys.readouterr().err
    assert not out.exists()


TINY = Config.from_dict({
    "model": {"conv_filters": [4, 8, 16], "reservoir_dim": 32, "lstm_units": 8},
    "train": {"epochs": 1},
    "export": {"calibration_size": 50, "check_size": 300, "check_set_size": 300},
    # A one-epoch toy model: the quantized gates are opened; this test is about the sweep's files.
    "tolerances": {"int8": {"min_top1": 0.0, "max_accuracy_drop": 1.0, "convert_min_top1": 0.0}},
})
VARIANTS = "tflite-fp32,tflite-mixed:reservoir=int16x8"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    full = load_splits("embedded")
    splits = Splits(Split(full.train.x[:1000], full.train.y[:1000]), full.val, full.test, "embedded")
    train(TINY, splits, root / "train", verbose=0)
    return root / "train" / "model.keras"


@pytest.mark.slow  # trains a tiny model and converts it twice (~1 min on 2 cores)
def test_two_variant_sweep_writes_consistent_files(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, out = tmp_path / "tiny.toml", tmp_path / "sweep"
    config.write_text("[export]\ncalibration_size = 50\ncheck_size = 300\ncheck_set_size = 300\n"
                      "[export.calibration.tflite-mixed]\nimages = 50\n"  # its variants' too (int16: 1,000)
                      "[tolerances.int8]\nmin_top1 = 0.0\nmax_accuracy_drop = 1.0\nconvert_min_top1 = 0.0\n")
    code = main(["sweep", str(tiny_model), "--out", str(out), "--config", str(config), "--data", "embedded",
                 "--variants", VARIANTS, "--runs", "20"])
    printed = capsys.readouterr().out
    assert code == EXIT_OK, printed
    assert {SWEEP_JSON, SWEEP_MD, SWEEP_PNG} <= {p.name for p in out.iterdir()}
    assert (out / SWEEP_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sweep = json.loads((out / SWEEP_JSON).read_text())
    assert sweep["machine"]["cpu_class"] == cpu_info().cpu_class
    assert sweep["command"].startswith("cllnn-export sweep") and "--variants" in sweep["command"]
    rows = {r["name"]: r for r in sweep["variants"]}
    assert list(rows) == ["tflite-fp32", "tflite-mixed-i8-i16-i8-i8"]
    manifest = load_manifest(out)  # one manifest for every variant: what cllnn-bench select reads
    for entry in manifest.artifacts:
        row = rows[entry.format]
        assert row["file"] == entry.file and row["size_kib"] == round(entry.size / 1024, 1)
        assert row["p50_us"] > 0 and row["p99_us"] >= row["p50_us"]
        assert row["calibration"] == entry.details.quantization.get("calibration")
    fp32, mixed = rows["tflite-fp32"], rows["tflite-mixed-i8-i16-i8-i8"]
    assert fp32["size_pct_fp32"] == 100.0 and fp32["top1_agreement"] == 1.0 and fp32["parity_passed"]
    assert fp32["main_error_stage"] is None and fp32["recipe"] is None
    assert mixed["recipe"] == {"cnn": "int8", "reservoir": "int16x8", "lstm": "int8", "head": "int8"}
    assert mixed["calibration"] == {"method": "minmax", "images": 50}
    assert mixed["size_kib"] < fp32["size_kib"] and mixed["main_error_stage"] in ("cnn", "reservoir", "lstm", "output")
    assert fp32["on_pareto_front"]  # nothing is more accurate
    markdown = (out / SWEEP_MD).read_text()
    assert cpu_info().cpu_class in markdown and sweep["command"] in markdown
    assert "tflite-mixed-i8-i16-i8-i8" in markdown and f"({SWEEP_PNG})" in markdown
    assert cpu_info().cpu_class in printed and printed.count("tflite-mixed-i8-i16-i8-i8") >= 3


def test_sweep_files_from_constructed_rows_and_the_report_section(tmp_path: Path) -> None:
    machine = {**cpu_info().record(), "isa_line": cpu_info().isa_line}
    rows = with_front([_row("fast", 0.002, 80.0, 60.0), _row("slow", 0.0, 300.0, 200.0),
                       _row("failed", None, None, None)])
    result = SweepResult(out_dir=tmp_path, rows=tuple(rows), machine=machine, command="cllnn-export sweep m --out d",
                         seconds=12.0, runs=50)
    write_sweep(result)
    saved = json.loads((tmp_path / SWEEP_JSON).read_text())
    assert [r["name"] for r in saved["variants"]] == ["fast", "slow", "failed"]
    assert saved["bench"]["runs"] == 50 and saved["machine"]["cpu_class"] == cpu_info().cpu_class
    text = (tmp_path / SWEEP_MD).read_text()
    assert text.index("| fast ") < text.index("| slow ") < text.index("| failed ")
    assert "cllnn-export sweep m --out d" in text and cpu_info().cpu_class in text
    assert (tmp_path / SWEEP_PNG).read_bytes()[:4] == b"\x89PNG"
    section = "".join(_sweep_section({**saved, "plot": "sweep/sweep.png"}))  # as report.html shows it
    assert "<h2>Precision sweep</h2>" in section and "src='sweep/sweep.png'" in section
    assert [row[0] for row in sweep_cells(saved)] == ["fast", "slow", "failed"]

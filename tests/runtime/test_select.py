"""cllnn-bench select on the runtime's tiny golden models: budgets, the choice, deploy/, refusals, no TensorFlow.

The directory is the ``artifacts`` fixture (tests/runtime/conftest.py): four tiny
files with a check set. On it the float32 files agree with the trained model on
every image and are ~33 KiB; the int8 ones are 10-15 KiB and disagree on one or
two of the 64 images (accuracy 1.6 and 3.1 points below), which the budgets
below are placed around.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.atomic import write_json_atomic
from runtime.bench.latency import BenchSettings
from runtime.artifacts.checkset import CHECK_SET_NAME, load_check_set, write_check_set
from runtime.deploy.choose import (
    EXIT_CHOSEN,
    EXIT_NONE_FITS,
    EXIT_USAGE,
    SELECTION_NAME,
    Budget,
    Candidate,
    Selection,
    choose,
    select,
)
from runtime.cli.main import main as bench_main
from runtime.errors import BudgetError
from runtime.deploy.directory import DeployError, check_out_dir, write_deploy
from runtime.artifacts.manifest import MANIFEST_NAME, load_manifest
from runtime.cli.select import main
from tests.runtime.helpers import FILES, REPO, describe, run_python

FAST = ["--runs", "5", "--warmup", "1"]
SETTINGS = BenchSettings(runs=5, warmup=1)
INT8 = {"int8.tflite", "int8.onnx"}
FP32 = {"fp32.tflite", "fp32.onnx"}


def _select(artifacts: Path, out: Path, *flags: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(artifacts), "--out", str(out), *FAST, *flags])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _candidates(out: Path) -> dict[str, dict]:
    return {c["file"]: c for c in json.loads((out / SELECTION_NAME).read_text())["candidates"]}


def test_no_budget_chooses_the_fastest_verified_file_and_deploy_holds_it_alone(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deploy"
    code, stdout, _ = _select(artifacts, out, capsys=capsys)
    assert code == EXIT_CHOSEN, stdout
    selection = Selection.load_json(out / SELECTION_NAME)
    chosen = selection.chosen
    assert chosen is not None and bool(selection)
    assert sorted(p.name for p in out.iterdir()) == sorted([chosen.file, MANIFEST_NAME, SELECTION_NAME])
    verified = [c for c in selection.candidates if c.verified]
    assert len(verified) == len(FILES) and [c.file for c in selection.candidates] == list(FILES)
    assert chosen.p50_us == min(c.p50_us for c in verified)
    assert chosen.reason == "the fastest by p50 of the 4 verified files within budget" == selection.verdict
    for candidate in verified:
        if not candidate.chosen:
            assert candidate.reason.startswith(f"slower than {chosen.format} (")
        assert candidate.p99_us >= candidate.p50_us > 0
    # the figures: the int8 files disagree on a few check images and lose accuracy; float32 do not
    by_file = {c.file: c for c in selection.candidates}
    for name in FP32:
        assert by_file[name].agreement_pct == 100.0 and by_file[name].accuracy_drop_pp == 0.0
    for name in INT8:
        assert 90.0 < by_file[name].agreement_pct < 100.0 and by_file[name].accuracy_drop_pp > 0.0
    # the record: machine (CPU class), settings, budget; the manifest: the one entry, the export's metadata
    record = json.loads((out / SELECTION_NAME).read_text())
    assert record["machine"]["cpu_class"] == runtime.machine.cpu_info().cpu_class
    assert record["settings"]["runs"] == 5 and record["chosen"] == chosen.file
    assert set(record["budget"].values()) == {None}
    assert record["signature"].startswith("not signed")
    manifest, source = load_manifest(out), load_manifest(artifacts)
    assert [a.file for a in manifest.artifacts] == [chosen.file] and manifest.check_set is None
    assert manifest.metadata == source.metadata
    assert manifest.artifacts[0].sha256 == source.entry_for(chosen.file).sha256
    # the deployed file loads through its copied manifest and computes what the original does
    check = load_check_set(artifacts, source)
    with runtime.load(out / chosen.file) as deployed, runtime.load(artifacts / chosen.file) as original:
        np.testing.assert_array_equal(deployed.predict(check.images), original.predict(check.images))
    # the terminal: one row per file, the chosen one marked, the CPU class under them
    rows = [line for line in stdout.splitlines() if any(f" {name} " in line for name in FILES)
            and ("yes" in line or "NO" in line)]
    assert len(rows) == len(FILES) and [r.startswith("*") for r in rows].count(True) == 1
    assert f" {chosen.file} " in next(r for r in rows if r.startswith("*"))
    assert f"CPU class {runtime.machine.cpu_info().cpu_class}:" in stdout
    assert stdout.rstrip().splitlines()[-1].startswith(f"CHOSEN {chosen.file}")


def test_a_size_limit_between_files_leaves_the_small_ones(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sizes = {name: (artifacts / name).stat().st_size / 1024 for name in FILES}
    limit = float(f"{(max(sizes[n] for n in INT8) + min(sizes[n] for n in FP32)) / 2:.1f}")  # ~24 KiB
    out = tmp_path / "deploy"
    code, stdout, _ = _select(artifacts, out, "--max-size-kib", str(limit), capsys=capsys)
    assert code == EXIT_CHOSEN, stdout
    candidates = _candidates(out)
    assert {name for name, c in candidates.items() if c["chosen"]} <= INT8
    for name in FP32:
        assert candidates[name]["reason"] == f"size {sizes[name]:.3g} KiB > budget {limit:g} KiB"
        assert candidates[name]["verified"] and candidates[name]["p50_us"] is not None  # measured, then excluded


def test_agreement_and_accuracy_limits_exclude_the_quantized_files(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, _ = _select(artifacts, tmp_path / "agree", "--min-agreement", "99.5", capsys=capsys)
    assert code == EXIT_CHOSEN, stdout
    candidates = _candidates(tmp_path / "agree")
    assert {name for name, c in candidates.items() if c["chosen"]} <= FP32
    for name in INT8:
        assert candidates[name]["reason"] == (
            f"top-1 agreement {candidates[name]['agreement_pct']:.3g}% < budget 99.5%")
    # one int8 file loses 1.6 points, the other 3.1: a 2-point budget keeps the first
    code, stdout, _ = _select(artifacts, tmp_path / "drop", "--max-accuracy-drop", "2", capsys=capsys)
    assert code == EXIT_CHOSEN, stdout
    candidates = _candidates(tmp_path / "drop")
    drops = {name: c["accuracy_drop_pp"] for name, c in candidates.items()}
    excluded = {name for name, c in candidates.items() if c["reason"].startswith("accuracy drop")}
    assert excluded == {name for name, drop in drops.items() if drop > 2} and excluded
    assert excluded < INT8 and not any(candidates[name]["chosen"] for name in excluded)


def test_a_file_that_fails_verification_is_not_a_candidate(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One image's stored reference moved to another class: the float32 files now differ from it by
    far more than their 1e-5 tolerance; the int8 files, held to top-1 agreement, still pass."""
    _alter_reference(artifacts, rows=slice(0, 1))
    out = tmp_path / "deploy"
    code, stdout, _ = _select(artifacts, out, capsys=capsys)
    assert code == EXIT_CHOSEN, stdout
    candidates = _candidates(out)
    assert {name for name, c in candidates.items() if c["chosen"]} <= INT8
    for name in FP32:
        candidate = candidates[name]
        assert not candidate["verified"] and candidate["p50_us"] is None and candidate["p99_us"] is None
        assert candidate["reason"].startswith("failed verification: max_abs ")
        assert candidate["reason"].endswith(" > 1e-05")


def test_no_file_fits_exits_1_naming_the_tightest_constraint_and_writes_nothing(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deploy"
    code, stdout, _ = _select(artifacts, out, "--max-p99-us", "1", "--max-size-kib", "20", capsys=capsys)
    assert code == EXIT_NONE_FITS, stdout
    last = stdout.rstrip().splitlines()[-1]
    assert last.startswith("NONE CHOSEN: no file fits the budget; tightest constraint: --max-p99-us 1 "
                           "excludes 4 of 4 verified files (nearest: ")
    assert "us > budget 1 us); also --max-size-kib 20 excludes 2" in last
    assert not out.exists() and list(tmp_path.glob(".deploy*")) == []
    # every file failing verification: verification is the constraint
    _alter_reference(artifacts, rows=slice(None))
    code, stdout, _ = _select(artifacts, out, capsys=capsys)
    assert code == EXIT_NONE_FITS, stdout
    assert "NONE CHOSEN: no file passed verification on this machine (4 listed): fp32.tflite: " in stdout
    assert not out.exists()


def _alter_reference(artifacts: Path, rows: slice) -> None:
    """Move the stored probabilities of ``rows`` to another class and re-record the check set's checksum."""
    manifest = load_manifest(artifacts)
    stored = load_check_set(artifacts, manifest)
    altered = stored.reference["output"].copy()
    altered[rows] = np.roll(altered[rows], 1, axis=1)
    record = write_check_set(artifacts / CHECK_SET_NAME, replace(stored, reference={"output": altered}),
                             source="tiny", split="test")
    write_json_atomic(artifacts / MANIFEST_NAME, replace(manifest, check_set=record).to_dict())


def _candidate(file: str, p50: float, p99: float, size_kib: float, agreement: float = 100.0,
               drop: float = 0.0, verified: bool = True) -> Candidate:
    return Candidate(format=file.replace(".", "-"), file=file, precision="int8", size=int(size_kib * 1024),
                     verified=verified, agreement_pct=agreement, accuracy=0.9, accuracy_drop_pp=drop,
                     max_abs=0.01, p50_us=p50, p99_us=p99)


def test_the_choice_rule_and_the_tightest_constraint_rule() -> None:
    candidates = [_candidate("a", 50, 90, 40), _candidate("b", 30, 60, 20, agreement=98.0, drop=1.0),
                  _candidate("c", 30, 50, 10, agreement=97.0, drop=2.0),
                  _candidate("d", 10, 20, 5, verified=False)]
    marked, verdict = choose(candidates, Budget())
    assert [c.chosen for c in marked] == [False, False, True, False]  # equal p50: the smaller p99 wins
    assert verdict == "the fastest by p50 of the 3 verified files within budget"
    assert marked[1].reason == "as fast as c (30 us), ranked after it by p99 and size"
    assert marked[3].reason == "" and not marked[3].chosen  # unverified: keeps its verification reason
    marked, verdict = choose(candidates, Budget(max_p99_us=70))
    assert verdict == "the fastest by p50 of the 2 verified files within budget"
    assert marked[0].reason == "p99 90 us > budget 70 us"
    marked, verdict = choose(candidates, Budget(max_p99_us=60, min_agreement=98))
    assert verdict == "the only verified file within budget" and marked[1].chosen
    # nothing fits; a tie (two each): the limit its nearest file misses by less, relative to the limit
    marked, verdict = choose(candidates, Budget(max_p99_us=55, min_agreement=99))
    assert not any(c.chosen for c in marked) and marked[1].reason == (
        "top-1 agreement 98% < budget 99%; p99 60 us > budget 55 us")  # in the order of the flags
    assert verdict == ("no file fits the budget; tightest constraint: --min-agreement 99 excludes 2 of 3 "
                       "verified files (nearest: b, top-1 agreement 98% < budget 99%); also --max-p99-us 55 "
                       "excludes 2")
    # most files excluded wins: agreement 99 excludes b and c, size 30 only a
    _, verdict = choose(candidates, Budget(min_agreement=99, max_size_kib=30))
    assert "tightest constraint: --min-agreement 99 excludes 2 of 3 verified files (nearest: b, " \
           "top-1 agreement 98% < budget 99%); also --max-size-kib 30 excludes 1" in verdict
    pair = candidates[:2]
    _, verdict = choose(pair, Budget(min_agreement=99, max_size_kib=30))
    assert "tightest constraint: --min-agreement 99 excludes 1 of 2" in verdict  # 1% short against 33% over
    _, verdict = choose(pair, Budget(min_agreement=99.9, max_size_kib=39.5))
    assert "tightest constraint: --max-size-kib 39.5 excludes 1 of 2" in verdict  # 1.3% over against 1.9% short


def test_a_board_admits_only_microcontroller_files_whose_flash_and_arena_fit_it() -> None:
    host = _candidate("int8.tflite", 80, 150, 892)
    seed = replace(_candidate("seed_tflm.tflite", 4800, 7000, 892), arena_bytes=154_000)
    small = replace(_candidate("small_tflm.tflite", 1500, 2500, 300), arena_bytes=150_000)
    marked, verdict = choose([host, seed, small], Budget.for_board("nano33-ble"))  # 1,024 KiB flash, 256 KiB RAM
    assert marked[0].reason == "not a microcontroller file (no tensor arena measured)"  # said once, not per limit
    assert marked[2].chosen and verdict == "the fastest by p50 of the 2 verified files within budget"
    marked, verdict = choose([host, seed, small], Budget.for_board("nrf52832"))  # 512 KiB flash, 64 KiB RAM
    assert not any(c.chosen for c in marked)
    assert marked[1].reason == "flash 892 KiB > budget 512 KiB; tensor arena 150 KiB > budget 64 KiB"
    assert verdict == ("no file fits the budget; tightest constraint: --ram-kib 64 excludes 3 of 3 verified files "
                       "(nearest: small_tflm.tflite, tensor arena 146 KiB > budget 64 KiB); also --flash-kib 512 "
                       "excludes 2")
    budget = Budget.for_board("nrf52832", max_ram_kib=200.0)  # a flag replaces the board's figure
    assert (budget.max_flash_kib, budget.max_ram_kib) == (512.0, 200.0)
    with pytest.raises(BudgetError, match="unknown board 'uno'; choose from nano33-ble"):
        Budget.for_board("uno")


@pytest.mark.parametrize(("flags", "expected"), [
    (["--max-p99-us", "-1"], "--max-p99-us must be >= 0, got -1"),
    (["--board", "uno"], "unknown board 'uno'"),
    (["--ram-kib", "-5"], "--ram-kib must be >= 0, got -5"),
    (["--max-accuracy-drop", "-0.5"], "--max-accuracy-drop must be >= 0"),
    (["--max-size-kib", "nan"], "--max-size-kib must be a finite number"),
    (["--min-agreement", "101"], "--min-agreement is a percentage (0 to 100), got 101"),
    (["--runs", "0"], "--runs must be >= 1"),
    (["--threads", "0"], "--threads must be >= 1"),
])
def test_bad_budget_or_settings_exit_2(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], expected: str
) -> None:
    code, _, err = _select(artifacts, tmp_path / "deploy", *flags, capsys=capsys)
    assert code == EXIT_USAGE and expected in err and "Traceback" not in err, err
    assert not (tmp_path / "deploy").exists()


@pytest.mark.parametrize(("case", "expected"), [
    ("missing_dir", "artifacts directory not found"),
    ("no_manifest", "manifest not found"),
    ("no_check_set", "listed in the manifest but missing"),
])
def test_bad_input_exits_2(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    target = artifacts
    if case == "missing_dir":
        target = tmp_path / "nowhere"
    elif case == "no_manifest":
        (artifacts / MANIFEST_NAME).unlink()
    else:
        (artifacts / CHECK_SET_NAME).unlink()
    code, _, err = _select(target, tmp_path / "deploy", capsys=capsys)
    assert code == EXIT_USAGE and expected in err, err


def test_out_dir_rules(artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """New or empty: written. An earlier select's: replaced. Anything else: refused, untouched."""
    empty = tmp_path / "empty"
    empty.mkdir()
    code, stdout, _ = _select(artifacts, empty, capsys=capsys)
    assert code == EXIT_CHOSEN, stdout
    first = Selection.load_json(empty / SELECTION_NAME).chosen
    # replaced by a select with another budget: only the int8 files fit 20 KiB
    code, stdout, _ = _select(artifacts, empty, "--max-size-kib", "20", "--min-agreement", "0", capsys=capsys)
    assert code == EXIT_CHOSEN, stdout
    second = Selection.load_json(empty / SELECTION_NAME).chosen
    assert second.file in INT8 and len(list(empty.iterdir())) == 3
    if first.file != second.file:
        assert not (empty / first.file).exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporaries left

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    code, _, err = _select(artifacts, foreign, capsys=capsys)
    assert code == EXIT_USAGE and "non-empty directory that cllnn-bench select did not write" in err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    (empty / "extra.bin").write_bytes(b"x")  # an earlier select's output plus a file of the user's
    code, _, err = _select(artifacts, empty, capsys=capsys)
    assert code == EXIT_USAGE and "also ['extra.bin']" in err
    assert (empty / "extra.bin").exists() and (empty / second.file).exists()

    a_file = tmp_path / "file"
    a_file.write_text("")
    code, _, err = _select(artifacts, a_file, capsys=capsys)
    assert code == EXIT_USAGE and "is a file" in err


def test_a_failed_write_leaves_the_earlier_deploy_intact(artifacts: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    selection = select(artifacts, Budget(), SETTINGS)
    write_deploy(selection, artifacts, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    chosen = artifacts / selection.chosen.file
    data = bytearray(chosen.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the file changes after it was verified
    chosen.write_bytes(bytes(data))
    with pytest.raises(runtime.ManifestError, match="changed after it was verified"):
        write_deploy(selection, artifacts, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(runtime.ManifestError):
        write_deploy(selection, artifacts, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    check_out_dir(out)  # still select's own
    with pytest.raises(DeployError):
        check_out_dir(artifacts)


def test_budget_validates_its_limits() -> None:
    assert Budget(max_p99_us=0).limits()[0][1] == 0
    with pytest.raises(BudgetError, match="--max-p99-us must be a finite number, got inf"):
        Budget(max_p99_us=float("inf"))


# -- independence from TensorFlow ---------------------------------------------------------------
NO_TENSORFLOW_SCRIPT = """
import runpy
import sys
entry, artifacts, out = sys.argv[1], sys.argv[2], sys.argv[3]
args = [artifacts, "--out", out, "--runs", "3", "--warmup", "0"]
if entry == "module":  # python -m runtime.cli.select ARTIFACTS_DIR --out DIR
    sys.argv = ["runtime.cli.select", *args]
    try:
        runpy.run_module("runtime.cli.select", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
else:  # cllnn-bench select ARTIFACTS_DIR --out DIR
    from runtime.cli.main import main
    code = main(["select", *args])
heavy = ("tensorflow", "keras", "tf2onnx", "onnx", "cllnn_edge", "export")
print("exit:", code)
print("heavy:", sorted(name for name in heavy if name in sys.modules))
"""


@pytest.mark.parametrize("entry", ["module", "cllnn-bench"])
def test_select_never_imports_tensorflow(artifacts: Path, tmp_path: Path, entry: str) -> None:
    result = run_python(NO_TENSORFLOW_SCRIPT, entry, str(artifacts), str(tmp_path / "deploy"))
    assert result.returncode == 0, describe(result)
    assert "exit: 0" in result.stdout and "heavy: []" in result.stdout, describe(result)


def test_the_console_script_dispatches_select(artifacts: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "cllnn-bench"
    done = subprocess.run([str(script), "select", str(artifacts), "--out", str(tmp_path / "deploy"), *FAST],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
                          timeout=120)
    assert done.returncode == 0 and "CHOSEN " in done.stdout, done.stderr
    assert bench_main(["select", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")]) == EXIT_USAGE

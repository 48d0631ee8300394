"""cllnn-bench: figures that hang together, JSON a CI job can keep, a regression gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.bench.latency import BenchResult, BenchSettings, bench_model, format_table
from runtime.cli.bench import main
from runtime.machine import CpuInfo, cpu_info
from tests.runtime.conftest import TinyModels

FAST = ["--warmup", "2", "--runs", "20"]


def test_bench_model_reports_consistent_figures(tiny: TinyModels) -> None:
    result = bench_model(tiny.int8_tflite, BenchSettings(batch=4, threads=1, warmup=2, runs=30))
    assert 0 < result.p50_us <= result.p90_us <= result.p99_us
    assert result.throughput_ips == pytest.approx(4 / (result.mean_us / 1e6))
    assert result.file_size == tiny.int8_tflite.stat().st_size
    assert result.format == "tflite" and result.batch == 4 and result.runs == 30
    assert 1 < result.peak_rss_mib < 4096 and result.load_ms > 0


def test_cli_prints_a_table_and_writes_json(
    tiny: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "bench.json"
    code = main([str(tiny.int8_tflite), str(tiny.fp32_onnx), "--batch", "2", *FAST, "--json", str(report)])
    assert code == 0
    out = capsys.readouterr().out
    assert "p50 us" in out and tiny.int8_tflite.name in out and tiny.fp32_onnx.name in out
    data = json.loads(report.read_text())
    assert data["settings"] == {"batch": 2, "threads": 1, "warmup": 2, "runs": 20, "seed": 0}
    assert data["machine"]["cpu_count"] >= 1 and "onnxruntime" in data["versions"]
    cpu = cpu_info()
    assert {key: data["machine"][key] for key in ("cpu", "cpu_arch", "cpu_isa", "cpu_class")} == cpu.record()
    assert CpuInfo.from_record(data["machine"]) == cpu
    assert f"CPU class {cpu.cpu_class}: {cpu.model}" in out
    assert [Path(r["model"]).name for r in data["results"]] == [tiny.int8_tflite.name, tiny.fp32_onnx.name]


def test_table_names_the_cpu_class_it_was_measured_on() -> None:
    result = BenchResult(model="m.tflite", format="tflite", file_size=2048, load_ms=1.0, batch=1, threads=1,
                         runs=10, p50_us=80.0, p90_us=90.0, p99_us=99.0, mean_us=85.0,
                         throughput_ips=11764.7, peak_rss_mib=40.0)
    epyc = CpuInfo(model="AMD EPYC 7B13", arch="x86-64", isa=("fma", "avx2"))
    lines = format_table([result], epyc).splitlines()
    assert lines[0].startswith("model") and lines[1].startswith("m.tflite")
    assert lines[-1] == "CPU class x86-64 AVX2 (no VNNI): AMD EPYC 7B13 (ISA: fma avx2)"


def _baseline(tmp_path: Path, model: Path, p50_us: float) -> Path:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"results": [{"model": str(model), "p50_us": p50_us}]}))
    return path


def test_baseline_gate_fails_on_a_regression(
    tiny: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    impossible = _baseline(tmp_path, tiny.int8_tflite, p50_us=0.001)  # no run is this fast
    code = main([str(tiny.int8_tflite), *FAST, "--baseline", str(impossible), "--max-regression", "50"])
    out = capsys.readouterr().out
    assert code == 1
    assert "REGRESSION" in out and tiny.int8_tflite.name in out and out.rstrip().endswith("FAILED")


def test_baseline_gate_passes_within_the_allowance(
    tiny: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generous = _baseline(tmp_path, tiny.int8_tflite, p50_us=1e9)
    assert main([str(tiny.int8_tflite), *FAST, "--baseline", str(generous)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("PASSED")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runs", "0"], "--runs must be >= 1"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--baseline", "/nonexistent/baseline.json"], "No such file"),
    ],
)
def test_bad_settings_exit_2(
    tiny: TinyModels, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main([str(tiny.int8_tflite), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_file_that_is_not_a_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    assert main([str(junk), *FAST]) == 2
    assert "junk.tflite" in capsys.readouterr().err


def test_console_script(tiny: TinyModels) -> None:
    script = Path(sys.executable).parent / "cllnn-bench"
    done = subprocess.run([str(script), str(tiny.fp32_tflite), *FAST], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert tiny.fp32_tflite.name in done.stdout


@pytest.fixture
def no_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything is measured: these errors must come before the work."""
    import runtime.bench.latency

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the benchmark ran before its inputs and outputs were checked")

    monkeypatch.setattr(runtime.bench.latency, "bench_model", refuse)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected a JSON object with a 'results' list (as --json writes), got list"),
        ({"results": [{"model": "m.tflite"}]}, "results[0] (m.tflite) needs 'p50_us', a positive number"),
        ({"results": [{"model": "m.tflite", "p50_us": 0}]}, "results[0] (m.tflite) needs 'p50_us', a positive"),
        ({"results": [{"model": "m.tflite", "p50_us": "12"}]}, "needs 'p50_us', a positive number of "
                                                                 "microseconds, got '12'"),
        ({"results": ["m.tflite"]}, "results[0] must be an object, got str"),
        ({"results": [{"p50_us": 3.0}]}, "results[0] needs 'model', the file's path, got None"),
        ({"runs": 3}, "got dict without a 'results' list"),
    ],
)
def test_a_malformed_baseline_exits_2_before_anything_is_measured(
    tiny: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_benchmark: None,
    document: object, message: str,
) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(document))
    assert main([str(tiny.int8_tflite), *FAST, "--baseline", str(baseline)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing/dir/x.json", "directory {root}/missing/dir does not exist"),
        ("DIR", "--json {root}/DIR cannot be written: it is a directory"),
    ],
)
def test_a_bad_json_path_exits_2_before_anything_is_measured_and_leaves_nothing(
    tiny: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_benchmark: None,
    target: str, message: str,
) -> None:
    (tmp_path / "DIR").mkdir()
    assert main([str(tiny.int8_tflite), *FAST, "--json", str(tmp_path / target)]) == 2
    assert message.format(root=tmp_path) in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["DIR"]  # no .DIR.tmp, no missing/

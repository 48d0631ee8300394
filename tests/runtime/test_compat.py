"""Runtime compatibility against the real tflite-runtime 2.14 wheel (the runtime many board images pin).

The wheel (x86-64 builds exist for Python <= 3.11) is installed once into a directory of its own under
``~/.cache/cllnn-edge/`` with the runtime's other dependencies (numpy < 2, which it was built against,
and fastjsonschema); each check runs in a subprocess whose ``sys.path`` holds that directory and this
repository and no site-packages, so ``tflite_runtime`` is importable and ``ai_edge_litert`` is not.
The files are the demo run's (tests/fixtures/run_a8fda90/artifacts: all eight formats). Each test asserts
both what the compatibility table predicts and what the runtime itself does, so either can fail it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from runtime.artifacts import compat
from runtime.artifacts.manifest import Manifest, load_manifest
from runtime.loader import runtime_needs
from tests.runtime.helpers import REPO, describe

ARTIFACTS = REPO / "tests" / "fixtures" / "run_a8fda90" / "artifacts"
TFLITE_RUNTIME = "tflite-runtime==2.14.0"
REQUIREMENTS = (TFLITE_RUNTIME, "numpy<2", "fastjsonschema")
RUNS_OLD = {"cllnn_fp32.tflite", "cllnn_fp16.tflite", "cllnn_int8.tflite"}


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cllnn-edge"


@pytest.fixture(scope="session")
def tflite_runtime_214() -> Path:
    """A directory holding tflite-runtime 2.14.0 and the runtime's dependencies, made once, atomically."""
    if sys.version_info[:2] > (3, 11):
        pytest.skip(f"tflite-runtime 2.14 has x86-64 wheels for Python <= 3.11 only; this is "
                    f"{sys.version_info.major}.{sys.version_info.minor}")
    target = _cache_root() / f"tflite-runtime-2.14.0-cp{sys.version_info.major}{sys.version_info.minor}"
    if (target / "tflite_runtime").is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-input", "--target",
                             str(staging), "--only-binary=:all:", *REQUIREMENTS],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        message = f"cannot install {' '.join(REQUIREMENTS)}: {result.stderr[-1500:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        staging.rename(target)
    except OSError:  # another session made it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _run_old(site: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``code`` under ``python -S`` with tflite-runtime 2.14 and this repository on its path, nothing else."""
    prelude = ("import importlib.util, sys\n"
               "assert importlib.util.find_spec('ai_edge_litert') is None, 'ai_edge_litert must be absent'\n"
               "assert importlib.util.find_spec('onnxruntime') is None\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(site), str(REPO))), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-S", "-c", prelude + code, *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env=env)


def _fixture_needs() -> dict[str, object]:
    manifest = load_manifest(ARTIFACTS)
    return {e.file: runtime_needs((ARTIFACTS / e.file).read_bytes(), e.file) for e in manifest.artifacts}


def test_the_table_says_which_fixture_files_tflite_runtime_214_loads() -> None:
    """From the files' op codes alone: fp32 / fp16 / int8 load on 2.14, dynamic-range and int16x8 do not."""
    for file, needs in _fixture_needs().items():
        if not file.endswith(".tflite"):
            assert compat.refusal(needs, compat.ORT_PACKAGE, "1.14.0") is None  # opset 18, IR 8
            assert "ai.onnx opset 18" in str(compat.refusal(needs, compat.ORT_PACKAGE, "1.13.1"))
            continue
        why = compat.refusal(needs, compat.TFLITE_RUNTIME_PACKAGE, "2.14.0")
        assert compat.refusal(needs, compat.LITERT_PACKAGE, "2.3.0") is None, (file, needs)
        if file == "cllnn_dynamic.tflite":
            assert why is not None and "FULLY_CONNECTED v12" in why and "2.14.0" in why, why
        elif file == "cllnn_int16x8.tflite":
            assert why is not None and "QUANTIZE uint8->int16" in why, why
        else:
            assert why is None, (file, why)


def _grown_manifest() -> Manifest:
    """The fixture's manifest with each record's ``needs`` filled as convert fills it (here, on the host)."""
    manifest = load_manifest(ARTIFACTS)
    needs = _fixture_needs()
    return Manifest(tuple(e.__class__(**{**e.__dict__, "needs": needs[e.file]}) for e in manifest.artifacts),
                    manifest.metadata, manifest.check_set)


def test_old_manifests_still_load_and_new_records_round_trip() -> None:
    """The fixture's manifest predates ``needs``: it loads; a record with needs survives its JSON."""
    assert all(entry.needs is None for entry in load_manifest(ARTIFACTS).artifacts)
    grown = _grown_manifest()
    assert grown.to_dict()["artifacts"][0]["needs"]["oldest"]
    again = Manifest.from_dict(json.loads(json.dumps(grown.to_dict())))
    assert again == grown
    assert again.entry_for("cllnn_dynamic.tflite").needs.op_versions["FULLY_CONNECTED"] == (12,)
    assert again.entry_for("cllnn_fp32.onnx").needs.opsets["ai.onnx"] == 18


LOAD_SCRIPT = """
import numpy as np, runtime
from runtime.errors import RuntimeRefusedError
directory = sys.argv[1]
for name in sys.argv[2].split(","):
    with runtime.load(f"{directory}/{name}") as model:
        assert model.interpreter_package == "tflite-runtime", model.interpreter_package
        print("LOADED", name, model.predict(np.zeros((2, 28, 28), np.uint8)).shape)
for name in sys.argv[3].split(","):
    try:
        runtime.load(f"{directory}/{name}")
    except RuntimeRefusedError as exc:
        print("REFUSED", name, str(exc).replace(chr(10), " "))
"""


def test_tflite_runtime_214_loads_and_refuses_as_the_table_says(tflite_runtime_214: Path) -> None:
    """The runtime's own verdict on each file agrees with the table's: the same files, the same op."""
    result = _run_old(tflite_runtime_214, LOAD_SCRIPT, str(ARTIFACTS), ",".join(sorted(RUNS_OLD)),
                      "cllnn_dynamic.tflite,cllnn_int16x8.tflite")
    assert result.returncode == 0, describe(result)
    loaded = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("LOADED")}
    refused = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("REFUSED")}
    assert loaded == RUNS_OLD, describe(result)
    assert "FULLY_CONNECTED' version '12'" in refused["cllnn_dynamic.tflite"], describe(result)
    assert "(QUANTIZE) failed to prepare" in refused["cllnn_int16x8.tflite"], describe(result)


PROBE_SCRIPT = """
from tflite_runtime.interpreter import Interpreter
for path in sys.argv[1:]:
    try:
        Interpreter(model_path=path)
        print("RESOLVED", path)
    except ValueError as exc:
        print("REFUSED", path, str(exc).splitlines()[0])
"""


def test_the_table_and_the_op_resolver_agree_at_each_version_edge(tflite_runtime_214: Path,
                                                                  tmp_path: Path) -> None:
    """Operator-code versions rewritten around 2.14's edge: the op resolver accepts exactly those the
    table maps to TensorFlow Lite 2.14.0 or older (FULLY_CONNECTED v10 / v11, DEQUANTIZE v5 / v6)."""
    flatbuffer_utils = pytest.importorskip("ai_edge_litert.tools.flatbuffer_utils")
    cases = {("cllnn_dynamic.tflite", "FULLY_CONNECTED", v) for v in (9, 10, 11, 12)}
    cases |= {("cllnn_fp16.tflite", "DEQUANTIZE", v) for v in (3, 5, 6)}
    expected = {}
    for source, op, version in sorted(cases):
        model = flatbuffer_utils.read_model_from_bytearray(bytearray((ARTIFACTS / source).read_bytes()))
        code = next(c for c in model.operatorCodes if compat.builtin_name(max(c.builtinCode,
                                                                               c.deprecatedBuiltinCode)) == op)
        code.version = version
        path = tmp_path / f"{op}_v{version}.tflite"
        path.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
        needs = compat.needs_of_tflite({op: (version,)})
        expected[str(path)] = compat.refusal(needs, compat.TFLITE_RUNTIME_PACKAGE, "2.14.0") is None
    result = _run_old(tflite_runtime_214, PROBE_SCRIPT, *sorted(expected))
    assert result.returncode == 0, describe(result)
    resolved = {line.split()[1]: line.startswith("RESOLVED") for line in result.stdout.splitlines()
                if line.startswith(("RESOLVED", "REFUSED"))}
    assert resolved == expected, describe(result)
    assert sum(resolved.values()) == 4 and len(resolved) == 7  # FC 9, 10 and DEQUANTIZE 3, 5 resolve


VERIFY_SCRIPT = """
import json
from runtime.bench.latency import BenchSettings
from runtime.checks.verify import verify
from runtime.deploy.choose import format_table, select
report = verify(sys.argv[1])
print("COMPARED", json.dumps(sorted(r.file for r in report.results)))
print("SKIPPED", json.dumps({s.file: [s.by, s.reason] for s in report.skipped}))
selection = select(sys.argv[1], settings=BenchSettings(warmup=1, runs=5))
print("CHOSEN", json.dumps(None if selection.chosen is None else selection.chosen.file))
print("SELECTION", json.dumps(selection.to_dict()["skipped"]))
print(format_table(selection))
"""


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """A copy of the fixture's artefacts whose manifest records each file's needs, as convert writes it now."""
    directory = tmp_path / "artifacts"
    shutil.copytree(ARTIFACTS, directory)
    (directory / "manifest.json").write_text(json.dumps(_grown_manifest().to_dict(), indent=2))
    return directory


def _skipped(result: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    line = next(line for line in result.stdout.splitlines() if line.startswith("SKIPPED {"))
    return dict(json.loads(line.split(" ", 1)[1]))


def test_an_older_manifest_is_skipped_by_the_runtimes_own_refusal(tflite_runtime_214: Path) -> None:
    """Without recorded needs the device reads the op versions from the file (the dynamic-range file is
    refused by the table) but cannot read the kernel types with 2.14's interpreter: the int16x8 file's
    QUANTIZE refusal then comes from the runtime itself, and verify skips it all the same."""
    result = _run_old(tflite_runtime_214, VERIFY_SCRIPT.split("selection = ")[0], str(ARTIFACTS))
    assert result.returncode == 0, describe(result)
    skipped = _skipped(result)
    assert skipped["cllnn_dynamic.tflite"][0] == "table"
    assert "FULLY_CONNECTED v12" in skipped["cllnn_dynamic.tflite"][1]
    assert skipped["cllnn_int16x8.tflite"][0] == "runtime", describe(result)
    assert "(QUANTIZE) failed to prepare" in skipped["cllnn_int16x8.tflite"][1]


def test_verify_and_select_skip_what_tflite_runtime_214_cannot_load(tflite_runtime_214: Path,
                                                                    recorded: Path) -> None:
    """On a device with tflite-runtime 2.14 alone: verify compares fp32 / fp16 / int8 and skips the rest
    with why (the op and version for the dynamic-range and int16x8 files); select never chooses one."""
    result = _run_old(tflite_runtime_214, VERIFY_SCRIPT, str(recorded))
    assert result.returncode == 0, describe(result)
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in result.stdout.splitlines()
             if line.startswith(("COMPARED", "SKIPPED", "CHOSEN", "SELECTION"))}
    assert set(json.loads(lines["COMPARED"])) == RUNS_OLD, describe(result)
    skipped = _skipped(result)
    assert set(skipped) == {"cllnn_dynamic.tflite", "cllnn_int16x8.tflite", "cllnn_fp32.onnx", "cllnn_int8.onnx",
                            "cllnn_tflm_int8.tflite"}, describe(result)
    assert skipped["cllnn_dynamic.tflite"][0] == "table"
    assert "needs FULLY_CONNECTED v12" in skipped["cllnn_dynamic.tflite"][1]
    assert "this device has tflite-runtime 2.14.0" in skipped["cllnn_dynamic.tflite"][1]
    assert skipped["cllnn_int16x8.tflite"][0] == "table"
    assert "needs QUANTIZE uint8->int16" in skipped["cllnn_int16x8.tflite"][1]
    assert "onnxruntime: not installed" in skipped["cllnn_fp32.onnx"][1]
    chosen = json.loads(lines["CHOSEN"])
    assert chosen is None or chosen in RUNS_OLD, describe(result)
    assert {s["file"] for s in json.loads(lines["SELECTION"])} == set(skipped)
    assert "SKIPPED" in result.stdout and "cannot load here: needs FULLY_CONNECTED v12" in result.stdout
    command = _run_old(tflite_runtime_214, "import runtime.cli.verify as cli; sys.exit(cli.main(sys.argv[1:]))",
                       str(recorded), "--tflite-backend", "tflite-runtime")
    assert command.returncode == 1, describe(command)  # that small model's int8 file fails its checks
    assert "SKIPPED tflite-dynamic (cllnn_dynamic.tflite): needs FULLY_CONNECTED v12" in command.stdout
    row = next(line for line in command.stdout.splitlines() if line.startswith("cllnn_dynamic.tflite "))
    assert ">= 1.0.1" in row and "none" in row and "SKIPPED" in row, row


@pytest.mark.slow
def test_the_table_ships_in_the_wheel(tmp_path: Path) -> None:
    """A device installs the wheel: the table compat reads must be inside it (pyproject's package data)."""
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the repository
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for package in ("cllnn_edge", "export", "runtime"):
        shutil.copytree(REPO / package, source / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                             "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, describe(result)
    (wheel,) = tmp_path.glob("cllnn_edge-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "runtime/artifacts/compat_table.json" in archive.namelist()
        assert json.loads(archive.read("runtime/artifacts/compat_table.json")) == compat.table()


def test_the_table_knows_every_op_version_the_formats_emit() -> None:
    """Each builtin op at each version in the demo's files has a published minimum (none is guessed)."""
    for file, needs in _fixture_needs().items():
        for op, versions in needs.op_versions.items():
            assert all(compat.tensorflow_for(op, v) is not None for v in versions), (file, op, versions)


BENCH = "import runtime.cli.bench as cli; sys.exit(cli.main(sys.argv[1:]))"


def test_cllnn_bench_times_on_tflite_runtime_when_asked(tflite_runtime_214: Path, tmp_path: Path) -> None:
    """``cllnn-bench --tflite-backend tflite-runtime`` (what ``target run --runtime`` passes): the file is
    timed on 2.14's Interpreter; on the host, which lacks tflite-runtime, the same flag is refused
    naming it, while an ONNX file beside keeps its own runtime."""
    report = tmp_path / "bench.json"
    result = _run_old(tflite_runtime_214, BENCH, str(ARTIFACTS / "cllnn_fp32.tflite"), "--runs", "3", "--warmup",
                      "1", "--tflite-backend", "tflite-runtime", "--json", str(report))
    assert result.returncode == 0, describe(result)
    written = json.loads(report.read_text())
    assert written["versions"]["tflite-runtime"] == "2.14.0" and "ai-edge-litert" not in written["versions"]
    assert written["results"][0]["runs"] == 3
    if compat.installed(compat.TFLITE_RUNTIME_PACKAGE) is not None:
        return  # this host has tflite-runtime: the refusal below cannot be seen here
    host = subprocess.run([sys.executable, "-m", "runtime.cli.bench", str(ARTIFACTS / "cllnn_fp32.onnx"),
                           str(ARTIFACTS / "cllnn_fp32.tflite"), "--runs", "3", "--warmup", "1",
                           "--tflite-backend", "tflite-runtime"], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert host.returncode == 2, describe(host)
    assert "cllnn_fp32.tflite: loading a .tflite model needs tflite-runtime" in host.stderr, describe(host)
    assert "cllnn_fp32.onnx" not in host.stderr  # timed on onnxruntime before the .tflite was refused

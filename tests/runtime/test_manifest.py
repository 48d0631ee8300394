"""manifest.json as untrusted input: validated as a whole, and only files inside its directory opened.

Documents of the wrong shape, too big or too deep are ``ManifestError`` naming the manifest and
the field (``runtime.artifacts.manifest_schema``); every file a manifest names goes through
``runtime.artifacts.manifest.contained`` (plain names, no symlinks, regular files). The CLIs turn both
into exit 2 with one line; an audit hook on ``open`` shows that nothing outside the artefacts
directory is opened when a manifest points outside (``test_nothing_outside_is_opened``).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import runtime
from runtime.cli.bench import main as bench_main
from runtime.artifacts.checkset import CHECK_SET_NAME
from runtime.errors import EdgeRuntimeError
from runtime.artifacts.manifest import MANIFEST_NAME, Manifest, contained, load_manifest, open_contained, sha256_file
from runtime.artifacts.manifest_schema import MAX_DEPTH, MAX_MANIFEST_BYTES, nesting_depth, validated_document
from runtime.cli.select import main as select_main
from runtime.cli.verify import main as verify_main
from runtime.checks.verify import verify
from tests.runtime.conftest import TinyModels
from tests.runtime.helpers import describe, run_python, write_artifacts

SHA = "0" * 64
TENSOR = {"name": "x", "shape": [-1, 28, 28, 1], "dtype": "float32", "scale": None, "zero_point": None}
ENTRY = {"file": "m.tflite", "format": "tflite-fp32", "runtime": "litert", "precision": "float32",
         "sha256": SHA, "size": 10, "inputs": [TENSOR], "outputs": [{**TENSOR, "shape": [-1, 10]}],
         "ops": {"SOFTMAX": 1}, "details": {"description": "", "metrics": {}, "checks": {}}}
GOOD = {"schema_version": 1, "artifacts": [ENTRY, {**ENTRY, "file": "n.onnx", "runtime": "onnxruntime"},
                                           {**ENTRY, "file": "o.tflite"}],
        "source_model": {"file": "/x/model.keras", "sha256": SHA}, "config": {"train": {}, "tolerances": {}}}


def _edited(edit: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    document = copy.deepcopy(GOOD)
    edit(document)
    return document


# (case, document or raw text, what the message must say after "m.json: ")
DOCUMENTS: list[tuple[str, Any, str]] = [
    ("list", "[]", "the top level: expected an object with schema_version and artifacts, got a list"),
    ("string", '"text"', "the top level: expected an object with schema_version and artifacts, got a string"),
    ("null", "null", "the top level: expected an object with schema_version and artifacts, got null"),
    ("ops_list", _edited(lambda d: d["artifacts"][2].update(ops=[])),
     "artifacts[2].ops: expected an object of op name -> count, got a list"),
    ("op_count", _edited(lambda d: d["artifacts"][0]["ops"].update(CONV_2D="3")),
     "artifacts[0].ops.CONV_2D: expected an integer, got a string '3'"),
    ("source_model", _edited(lambda d: d.update(source_model="text")),
     "source_model: expected an object {file, sha256}, got a string 'text'"),
    ("source_sha", _edited(lambda d: d["source_model"].update(sha256=5)),
     "source_model.sha256: expected a SHA-256 as 64 lowercase hex digits, got an integer 5"),
    ("config_train", _edited(lambda d: d["config"].update(train=[1])), "config.train: expected an object"),
    ("no_artifacts", _edited(lambda d: d.pop("artifacts")), "the top level: lacks artifacts (required)"),
    ("version", _edited(lambda d: d.update(schema_version=2)), "schema_version: expected schema_version 1"),
    ("entry_field", _edited(lambda d: d["artifacts"][1].pop("sha256")), "artifacts[1]: lacks sha256 (required)"),
    ("unknown_field", _edited(lambda d: d["artifacts"][0].update(path="x")), "artifacts[0]: unknown field(s) path"),
    ("size_bool", _edited(lambda d: d["artifacts"][0].update(size=True)),
     "artifacts[0].size: expected a size in bytes (integer), got a boolean"),
    ("sha_short", _edited(lambda d: d["artifacts"][0].update(sha256="abc")), "artifacts[0].sha256: expected a SHA-256"),
    ("shape", _edited(lambda d: d["artifacts"][0]["inputs"][0].update(shape="28x28")),
     "artifacts[0].inputs[0].shape: expected a list of dimensions"),
    ("inputs_none", _edited(lambda d: d["artifacts"][0].update(inputs=None)),
     "artifacts[0].inputs: expected a list of tensor specs, got null"),
    ("too_many", _edited(lambda d: d.update(artifacts=[ENTRY] * 65)),
     "artifacts: expected a list of artefact entries (maxItems 64), got a list of length 65"),
    ("runtime", _edited(lambda d: d["artifacts"][0].update(runtime="tensorflow")),
     "artifacts[0].runtime: expected 'litert' or 'onnxruntime'"),
    ("probe_half", _edited(lambda d: d["artifacts"][0]["details"].update(probe={"file": "probes/m.tflite"})),
     "artifacts[0].details.probe: lacks sha256, size (required with file)"),
    ("check_set", _edited(lambda d: d.update(check_set={"file": "c.npz"})), "check_set: lacks sha256, size, images"),
    ("versions", _edited(lambda d: d.update(versions={"numpy": 2})), "versions.numpy: expected a string"),
]
BAD_NAMES = ["../outside/m.tflite", "/etc/passwd", "/abs/m.tflite", "..", ".", "", "a\\b.tflite", "C:m.tflite",
             "probes/../../m.tflite", "./m.tflite", ".hidden", "a//b", "a/", "a/b/c", "m.tflite\n", "m\x00.tflite",
             "naïve.tflite", "x" * 200]


@pytest.mark.parametrize(("case", "document", "expected"), DOCUMENTS, ids=[d[0] for d in DOCUMENTS])
def test_a_document_of_the_wrong_shape_names_the_field(case: str, document: Any, expected: str) -> None:
    raw = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(runtime.ManifestError) as caught:
        validated_document(raw.encode(), "m.json")
    assert str(caught.value).startswith(f"m.json: {expected}"), str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, EdgeRuntimeError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_file_name_that_is_not_plain_is_refused_by_the_schema(name: str) -> None:
    for where, edit in [
        ("artifacts[1].file", lambda d: d["artifacts"][1].update(file=name)),
        ("artifacts[0].details.probe.file", lambda d: d["artifacts"][0]["details"].update(
            probe={"file": name, "sha256": SHA, "size": 1})),
        ("check_set.file", lambda d: d.update(check_set={"file": name, "sha256": SHA, "size": 1, "images": 1,
                                                         "source": "s", "split": "test", "stages": ["output"]})),
    ]:
        with pytest.raises(runtime.ManifestError, match=rf"^m\.json: {re.escape(where)}: expected a plain name of a "
                           rf"file inside the artefacts directory"):
            validated_document(json.dumps(_edited(edit)).encode(), "m.json")


def test_a_valid_document_and_what_export_writes_pass() -> None:
    assert validated_document(json.dumps(GOOD).encode(), "m.json") == GOOD
    manifest = Manifest.from_dict(GOOD)
    assert validated_document(json.dumps(manifest.to_dict()).encode(), "m.json")["artifacts"][2]["file"] == "o.tflite"
    probe = _edited(lambda d: d["artifacts"][0]["details"].update(probe={"error": "no probe for this format"}))
    assert Manifest.from_dict(validated_document(json.dumps(probe).encode(), "m.json")).artifacts[0].details.probe


def test_depth_and_size_are_bounded_before_parsing() -> None:
    with pytest.raises(runtime.ManifestError, match=r"^m\.json: nested more than 20 levels deep \(objects and lists\)"):
        validated_document(b"[" * 100_000, "m.json")  # json.loads would raise RecursionError
    deep = json.dumps(_edited(lambda d: d["artifacts"][0]["details"]["checks"].update(
        c={"passed": True, "value": json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)})))
    with pytest.raises(runtime.ManifestError, match="levels deep"):
        validated_document(deep.encode(), "m.json")
    big = json.dumps({**GOOD, "padding": "x" * MAX_MANIFEST_BYTES}).encode()
    with pytest.raises(runtime.ManifestError, match=r"^m\.json: larger than a manifest may be \(1,048,576 bytes\)"):
        validated_document(big, "m.json")
    assert nesting_depth('{"a": "[[[[{{{\\"[[", "b": [[]]}') == 3  # brackets in strings do not count
    for raw, expected in [(b"\xff\xfe", "not UTF-8"), (b"{not json", "not valid JSON"),
                          (b"1" * 5000, "not valid JSON")]:  # past Python's int-digits limit
        with pytest.raises(runtime.ManifestError, match=f"cannot read manifest m.json: {expected}"):
            validated_document(raw, "m.json")


def test_load_manifest_reads_only_a_bounded_regular_file(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text("[]")
    with pytest.raises(runtime.ManifestError, match=rf"^{tmp_path / MANIFEST_NAME}: the top level: expected an obj"):
        load_manifest(tmp_path)
    real = tmp_path / "real.json"
    real.write_text(json.dumps(GOOD))
    assert load_manifest(real).artifacts[0].file == "m.tflite"
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / MANIFEST_NAME).symlink_to(real)
    with pytest.raises(runtime.ManifestError, match="is a symlink; refusing to follow it"):
        load_manifest(linked)
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / MANIFEST_NAME)  # opening it for reading would block without O_NONBLOCK
    with pytest.raises(runtime.ManifestError, match="is not a regular file"):
        load_manifest(fifo)


# -- contained(): the one place the path rule lives ----------------------------------------------
@pytest.mark.parametrize("name", BAD_NAMES)
def test_contained_refuses_names_that_are_not_plain(tmp_path: Path, name: str) -> None:
    with pytest.raises(runtime.ManifestError, match="refusing the file name"):
        contained(tmp_path, name)


def test_contained_refuses_symlinks_and_special_files(tmp_path: Path) -> None:
    directory, outside = tmp_path / "artifacts", tmp_path / "outside"
    directory.mkdir()
    outside.mkdir()
    (outside / "m.tflite").write_bytes(b"model")
    (directory / "m.tflite").write_bytes(b"model")
    (directory / "probes").mkdir()
    (directory / "probes" / "m.tflite").write_bytes(b"probe")
    assert contained(directory, "m.tflite") == directory / "m.tflite"
    assert contained(directory, "probes/m.tflite") == directory / "probes" / "m.tflite"
    assert contained(directory, "missing.tflite") == directory / "missing.tflite"  # the caller says "missing"
    with open_contained(directory, "probes/m.tflite") as handle:
        assert handle.read() == b"probe"

    (directory / "link.tflite").symlink_to(outside / "m.tflite")
    (directory / "inside_link.tflite").symlink_to(directory / "m.tflite")  # refused too: no links at all
    (directory / "dangling.tflite").symlink_to(outside / "gone.tflite")
    (directory / "linked_probes").symlink_to(outside, target_is_directory=True)
    for name in ("link.tflite", "inside_link.tflite", "dangling.tflite", "linked_probes/m.tflite"):
        with pytest.raises(runtime.ManifestError, match=r"is a symlink; a file a manifest names must be a regular"):
            contained(directory, name)
    with pytest.raises(runtime.ManifestError, match="is not a regular file"):
        contained(directory, "probes")
    os.mkfifo(directory / "pipe.tflite")
    with pytest.raises(runtime.ManifestError, match="is not a regular file"):
        contained(directory, "pipe.tflite")
    # The directory itself may be reached through a link (an A/B "current -> v3" switch).
    (tmp_path / "current").symlink_to(directory, target_is_directory=True)
    assert contained(tmp_path / "current", "m.tflite") == tmp_path / "current" / "m.tflite"


# -- the runtime, verify, select and bench on manifests of the wrong shape ----------------------
BAD_FILES = {"list": "[]", "string": '"text"', "null": "null", "deep": "[" * 100_000,
             "ops_list": None, "source_model": None}


def _write_bad(artifacts: Path, case: str) -> str:
    """Spoil ``artifacts``'s manifest as ``case`` says; returns what the error must name."""
    path = artifacts / MANIFEST_NAME
    if BAD_FILES[case] is not None:
        path.write_text(BAD_FILES[case])
        return "levels deep" if case == "deep" else "the top level: expected an object"
    document = json.loads(path.read_text())
    if case == "ops_list":
        document["artifacts"][2]["ops"] = []
        expected = "artifacts[2].ops: expected an object of op name -> count, got a list"
    else:
        document["source_model"] = "text"
        expected = "source_model: expected an object {file, sha256}, got a string 'text'"
    path.write_text(json.dumps(document))
    return expected


def _one_line_error(err: str, prog: str, expected: str, manifest: Path) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{prog}: error: ") and expected in lines[0] and str(manifest) in lines[0], err


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_manifest_is_a_manifest_error_and_exit_2_everywhere(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    expected = _write_bad(artifacts, case)
    manifest = artifacts / MANIFEST_NAME
    with pytest.raises(runtime.ManifestError, match=re.escape(expected)):
        runtime.load(artifacts / "fp32.tflite")
    with pytest.raises(runtime.ManifestError):
        verify(artifacts)
    for prog, command in [
        ("cllnn-bench", lambda: bench_main([str(artifacts / "fp32.onnx"), "--runs", "1", "--warmup", "0"])),
        ("cllnn-bench verify", lambda: verify_main([str(artifacts)])),
        ("cllnn-bench select", lambda: select_main([str(artifacts), "--out", str(tmp_path / "deploy"),
                                                    "--runs", "1", "--warmup", "0"])),
    ]:
        assert command() == 2, prog
        _one_line_error(capsys.readouterr().err, prog, expected, manifest)
    assert not (tmp_path / "deploy").exists()


# -- manifests that point outside the artefacts directory ---------------------------------------
def _outside_cases(tiny: TinyModels, root: Path) -> dict[str, Path]:
    """Artefact directories whose manifest names (or whose files link to) things outside them."""
    outside = root / "outside"
    outside.mkdir()
    valid = shutil.copyfile(tiny.int8_tflite, outside / "int8.tflite")  # a valid model, elsewhere
    shutil.copyfile(tiny.fp32_tflite, outside / "fp32.tflite")
    cases: dict[str, Path] = {}

    def case(name: str) -> tuple[Path, dict[str, Any]]:
        artifacts = write_artifacts(tiny, root / name)
        cases[name] = artifacts
        return artifacts, json.loads((artifacts / MANIFEST_NAME).read_text())

    def save(artifacts: Path, document: dict[str, Any]) -> None:
        (artifacts / MANIFEST_NAME).write_text(json.dumps(document))

    for name, file in [("dotdot", "../outside/int8.tflite"), ("absolute", str(valid)), ("passwd", "/etc/passwd")]:
        artifacts, document = case(name)
        entry = next(e for e in document["artifacts"] if e["file"] == "int8.tflite")
        entry["file"] = file
        save(artifacts, document)
    artifacts, _ = case("symlinked_model")
    (artifacts / "int8.tflite").unlink()
    (artifacts / "int8.tflite").symlink_to(valid)  # same bytes: only the link rule stops it
    artifacts, _ = case("symlinked_check_set")
    shutil.move(artifacts / CHECK_SET_NAME, outside / CHECK_SET_NAME)
    (artifacts / CHECK_SET_NAME).symlink_to(outside / CHECK_SET_NAME)
    artifacts, document = case("symlinked_probes")
    entry = next(e for e in document["artifacts"] if e["file"] == "fp32.tflite")
    entry["details"] = {"probe": {"file": "probes/fp32.tflite", "sha256": sha256_file(outside / "fp32.tflite"),
                                  "size": (outside / "fp32.tflite").stat().st_size, "stages": ["output"],
                                  "outputs": entry["outputs"]}}
    save(artifacts, document)
    (artifacts / "probes").symlink_to(outside, target_is_directory=True)
    artifacts, document = case("symlinked_manifest")
    (outside / MANIFEST_NAME).write_text(json.dumps(document))
    (artifacts / MANIFEST_NAME).unlink()
    (artifacts / MANIFEST_NAME).symlink_to(outside / MANIFEST_NAME)
    return cases


# Runs each way of reading an artefacts directory under an audit hook that records every file
# opened (as the kernel resolves it, so a followed symlink shows its target; an open that fails
# is recorded too); everything the calls import lazily is imported first, on a good directory.
AUDIT_SCRIPT = """
import json, os, sys
from pathlib import Path
import runtime
from runtime.cli.bench import main as bench_main
from runtime.artifacts.opened import Artifacts
from runtime.cli.select import main as select_main
from runtime.cli.verify import main as verify_main
from runtime.checks.verify import verify
from runtime.artifacts.manifest import load_manifest
good, out, cases = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
verify(good)
bench_main([str(good / "fp32.onnx"), "--runs", "1", "--warmup", "0"])
opened = []
def hook(event, args):  # the file the kernel would reach: links resolved, a final one not with O_NOFOLLOW
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if isinstance(args[2], int) and args[2] & os.O_NOFOLLOW:
            opened.append(os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(path))),
                                       os.path.basename(path)))
        else:
            opened.append(os.path.realpath(path))
sys.addaudithook(hook)
report = {}
for name, directory in cases.items():
    directory = Path(directory)
    del opened[:]
    outcomes = []
    for call in [lambda: verify(directory),
                 lambda: Artifacts.open(directory).check_listed(),
                 *[(lambda f=f: runtime.load(directory / f).close()) for f in ("int8.tflite", "fp32.tflite")]]:
        try:
            call()
            outcomes.append("ok")
        except runtime.EdgeRuntimeError as exc:
            outcomes.append(type(exc).__name__ + ": " + str(exc))
    outcomes.append(verify_main([str(directory)]))
    outcomes.append(bench_main([str(directory / "int8.tflite"), "--runs", "1", "--warmup", "0"]))
    outcomes.append(select_main([str(directory), "--out", str(out / name), "--runs", "1", "--warmup", "0"]))
    report[name] = {"outcomes": outcomes, "opened": sorted(set(opened))}
print("REPORT " + json.dumps(report))
"""


def test_nothing_outside_is_opened(tiny: TinyModels, tmp_path: Path) -> None:
    cases = _outside_cases(tiny, tmp_path)
    good = write_artifacts(tiny, tmp_path / "good")
    result = run_python(AUDIT_SCRIPT, str(good), str(tmp_path / "deploy"),
                        json.dumps({k: str(v) for k, v in cases.items()}), timeout=300)
    assert result.returncode == 0, describe(result)
    report = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))[7:])
    assert set(report) == set(cases)
    for name, seen in report.items():
        artifacts = os.path.realpath(cases[name]) + os.sep
        # Besides the artefacts: cllnn-bench describes the machine it timed on (/proc/cpuinfo, its own
        # peak memory) and the libraries it ran (their metadata, under the interpreter's prefixes).
        machine = ("/proc/", sys.prefix + os.sep, sys.base_prefix + os.sep)
        # And select's --out, which the user named: its directory, and the nearest existing one
        # above it, where the writability check creates and removes a probe file.
        home = os.path.realpath(tmp_path)
        chosen = (os.path.join(home, "deploy") + os.sep, os.path.join(home, ".write-probe-"))
        outside = [path for path in seen["opened"]
                   if not path.startswith((artifacts, *machine, *chosen)) and path != home]
        assert outside == [], f"{name}: opened outside {artifacts}: {outside}"
        *api, verify_code, bench_code, select_code = seen["outcomes"]
        assert api[0] != "ok", f"{name}: {api}"
        if name not in ("symlinked_check_set", "symlinked_probes"):  # what the listed-files check does not read
            assert api[1] != "ok", f"{name}: {api}"
        assert all(o == "ok" or o.startswith(("ManifestError: ", "CheckSetError: ")) for o in api), f"{name}: {api}"
        assert (verify_code, select_code) == (2, 2), f"{name}: {seen['outcomes']}"
        if name in ("dotdot", "absolute", "passwd", "symlinked_model", "symlinked_manifest"):
            assert bench_code == 2, f"{name}: {seen['outcomes']}"
    assert not (tmp_path / "deploy").exists()


def test_a_model_given_as_a_symlink_beside_a_manifest_is_refused(artifacts: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    real = shutil.move(artifacts / "fp32.tflite", elsewhere / "fp32.tflite")
    (artifacts / "fp32.tflite").symlink_to(real)
    with pytest.raises(runtime.ManifestError, match="is a symlink"):
        runtime.load(artifacts / "fp32.tflite")
    with pytest.raises(runtime.ManifestError, match="is a symlink"):
        runtime.load(artifacts / "fp32.tflite", manifest=artifacts / MANIFEST_NAME)
    link = elsewhere / "link.tflite"  # no manifest beside it: the user's own file, followed
    link.symlink_to(real)
    with runtime.load(link) as model:
        assert model.manifest_entry is None


def test_deploy_refuses_a_chosen_file_swapped_for_a_symlink(artifacts: Path, tmp_path: Path) -> None:
    from runtime.bench.latency import BenchSettings
    from runtime.deploy.choose import Budget, select
    from runtime.deploy.directory import write_deploy

    selection = select(artifacts, Budget(), BenchSettings(runs=3, warmup=0))
    assert selection.chosen is not None
    chosen = artifacts / selection.chosen.file
    real = shutil.move(chosen, tmp_path / "elsewhere")
    chosen.symlink_to(real)  # same bytes, after verification
    with pytest.raises(runtime.ManifestError, match="is a symlink"):
        write_deploy(selection, artifacts, tmp_path / "deploy")
    assert not (tmp_path / "deploy").exists()

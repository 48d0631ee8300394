"""convert --runtime tflite-runtime==2.14: files made for an old runtime, checked in the real wheel.

A small model is trained and converted to the dynamic-range and int16x8 TFLite files with the pin. The
dynamic-range file's dense layers then carry per-tensor weights (FULLY_CONNECTED below version 12), its
manifest record says tflite-runtime 2.14 loads it, and tflite-runtime 2.14 itself (the wheel from the
package index, as tests/runtime/test_compat.py installs it) loads and verifies it as the host's runtime
does. The int16x8 file is said to be one 2.14 cannot load (derived from compat's table), not a crash.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export.cli.main import main
from runtime.artifacts import compat
from runtime.artifacts.manifest import load_manifest
from runtime.checks.verify import verify
from tests.runtime.helpers import describe
from tests.runtime.test_compat import _run_old, tflite_runtime_214  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow  # trains a small model and converts two formats (~1 min on 2 cores)
SMALL = "[model]\nreservoir_dim = 64\nlstm_units = 32\nconv_filters = [8, 16, 32]\n[train]\nepochs = 4\n"
VERIFY = """
import json
from runtime.checks.verify import verify
report = verify(sys.argv[1], tflite_backend="tflite-runtime")
print("REPORT", json.dumps({"results": {r.file: r.passed for r in report.results},
                            "skipped": {s.file: s.reason for s in report.skipped}}))
"""


@pytest.fixture(scope="module")
def pinned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("pinned")
    (root / "config.toml").write_text(SMALL)
    assert main(["train", "--config", str(root / "config.toml"), "--out", str(root / "train")]) == 0
    capture = root / "convert.out"
    with pytest.MonkeyPatch.context() as patch, capture.open("w") as out:
        patch.setattr("sys.stdout", out)
        code = main(["convert", str(root / "train" / "model.keras"), "--out", str(root / "artifacts"), "--config",
                     str(root / "config.toml"), "--formats", "tflite-dynamic,tflite-int16x8",
                     "--runtime", "tflite-runtime==2.14"])
    assert code == 0, capture.read_text()
    return root / "artifacts", capture.read_text()


def test_the_dynamic_range_file_is_made_for_tflite_runtime_214_and_int16x8_is_said_not_to_load(
        pinned: tuple[Path, str]) -> None:
    artifacts, out = pinned
    manifest = load_manifest(artifacts)
    dynamic = manifest.entry_for("cllnn_dynamic.tflite").needs
    assert dynamic is not None and max(dynamic.op_versions["FULLY_CONNECTED"]) < 12, dynamic
    assert compat.refusal(dynamic, compat.TFLITE_RUNTIME_PACKAGE, "2.14.0") is None, dynamic.reasons
    said = "tflite-int16x8: cannot load on tflite-runtime==2.14: needs QUANTIZE uint8->int16"
    assert said in out, out
    assert "tflite-dynamic: cannot load" not in out
    record = json.loads((artifacts / "manifest.json").read_text())["runtime"]
    assert (record["package"], record["version"], record["from"]) == ("tflite-runtime", "2.14", "--runtime")
    assert set(record["cannot_load"]) == {"tflite-int16x8"}
    assert "QUANTIZE uint8->int16" in record["cannot_load"]["tflite-int16x8"]


def test_tflite_runtime_214_loads_the_file_and_it_verifies_as_on_the_host(
        pinned: tuple[Path, str], tflite_runtime_214: Path) -> None:  # noqa: F811
    artifacts, _ = pinned
    result = _run_old(tflite_runtime_214, VERIFY, str(artifacts))
    assert result.returncode == 0, describe(result)
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))
    old = json.loads(line.split(" ", 1)[1])
    assert set(old["results"]) == {"cllnn_dynamic.tflite"}, describe(result)  # it loaded and ran there
    assert "QUANTIZE uint8->int16" in old["skipped"]["cllnn_int16x8.tflite"]
    here = {r.file: r.passed for r in verify(artifacts).results}
    assert old["results"]["cllnn_dynamic.tflite"] is here["cllnn_dynamic.tflite"] is True  # parity passes on both

"""--runtime NAME==VERSION and --use-device-runtime: parsed once into a RuntimePin, refused clearly
when it is not one runtime release, checked against the device's Python before any download."""

from __future__ import annotations

from pathlib import Path

import pytest

from cllnn_edge.config import Config
from cllnn_edge.errors import ConfigError
from export.cli.main import main
from export.pipeline.convert import ConvertJob
from export.pipeline.plan import Overrides, resolve
from export.errors import TargetError
from export.targets.runtime_pin import RuntimePin
from export.targets.wheels import parse_platform
from runtime.artifacts.compat import needs_of_onnx, needs_of_tflite


def test_a_pinned_runtime_release_parses_into_what_the_device_runs() -> None:
    pin = RuntimePin.parse("tflite_runtime==2.14")
    assert (pin.package, pin.version, pin.requirement) == ("tflite-runtime", "2.14", "tflite-runtime==2.14")
    assert pin.tflite_backend == "tflite-runtime" and pin.companions == ("numpy<2",)
    assert RuntimePin.parse("ai-edge-litert==1.4.0").tflite_backend == "ai-edge-litert"
    onnx = RuntimePin.parse("onnxruntime==1.20.1")
    assert onnx.tflite_backend is None and onnx.companions == ()
    assert pin.to_dict() == {"package": "tflite-runtime", "version": "2.14", "from": "--runtime"}


@pytest.mark.parametrize(("text", "says"), [
    ("tflite-runtime>=2.14", "pin one release with =="),
    ("tflite-runtime==2.*", "pin one release with =="),
    ("tflite-runtime==2.14,<3", "pin one release with =="),
    ("tflite-runtime", "pin one release with =="),
    ("tflite-runtime==2.14; python_version<'3.12'", "pin one release with =="),
    ("numpy==1.26.4", "numpy is not a device runtime"),
    ("tflite runtime 2.14", "not a pip requirement"),
])
def test_anything_but_one_runtime_release_is_refused_with_what_is_taken(text: str, says: str) -> None:
    with pytest.raises(TargetError, match="e.g. tflite-runtime==2.14") as caught:
        RuntimePin.parse(text)
    assert says in str(caught.value)


def test_a_python_newer_than_the_wheels_is_refused_before_any_download() -> None:
    pin = RuntimePin.parse("tflite-runtime==2.14")
    pin.check_python("local", (3, 11))  # cp311 wheels exist
    with pytest.raises(TargetError, match=r"target ssh://pi: --runtime tflite-runtime==2.14: tflite-runtime has "
                                          r"wheels for CPython <= 3.11 only, and the device runs Python 3.12"):
        pin.check_python("ssh://pi", (3, 12, 1))
    RuntimePin.parse("ai-edge-litert==2.3.0").check_python("ssh://pi", (3, 13))  # no limit known


def test_the_device_runtime_is_what_the_probe_found_tflite_runtime_first() -> None:
    found = {"ai-edge-litert": "2.3.0", "tflite-runtime": "2.14.0", "onnxruntime": None, "numpy": "1.26.4"}
    pin = RuntimePin.of_device("ssh://pi", found)
    assert (pin.requirement, pin.origin) == ("tflite-runtime==2.14.0", "--use-device-runtime")
    assert RuntimePin.of_device("x", {"onnxruntime": "1.20.1"}).requirement == "onnxruntime==1.20.1"
    with pytest.raises(TargetError, match="target ssh://pi: --use-device-runtime, but the probe found none of "
                                          "tflite-runtime, ai-edge-litert, onnxruntime installed there"):
        RuntimePin.of_device("ssh://pi", {"numpy": "2.4.6", "tflite-runtime": None})


def test_a_pin_refuses_what_its_release_cannot_load_and_ignores_other_runtimes_files() -> None:
    pin = RuntimePin.parse("tflite-runtime==2.14")
    assert "FULLY_CONNECTED v12" in str(pin.refusal(needs_of_tflite({"FULLY_CONNECTED": (12,)})))
    assert pin.refusal(needs_of_tflite({"FULLY_CONNECTED": (9,)})) is None
    assert pin.refusal(needs_of_onnx({"ai.onnx": 18}, 8)) is None  # an ONNX file: not this pin's to judge


def test_target_run_takes_one_runtime_choice_and_refuses_a_bad_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["target", "run", "runs/x", "local", "--runtime", "tflite-runtime==2.14", "--use-device-runtime"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["target", "run", "runs/x", "local", "--runtime", "tflite-runtime~=2.14"]) == 2
    assert "pin one release with ==" in capsys.readouterr().err


def test_a_library_caller_gets_the_configs_runtime_and_a_bad_one_fails_before_any_work(tmp_path: Path) -> None:
    cfg = Config().replace("target", runtime="tflite-runtime==2.14")
    job = ConvertJob.from_config(tmp_path / "model.keras", tmp_path / "out", cfg)
    assert job.runtime == RuntimePin("tflite-runtime", "2.14", "[target] runtime") and not job.per_channel_dense
    assert ConvertJob.from_config(tmp_path / "m", tmp_path / "o", Config()).per_channel_dense
    assert ConvertJob.from_config(tmp_path / "m", tmp_path / "o", cfg.replace("target", runtime="onnxruntime==1.20.1")
                                  ).per_channel_dense  # FULLY_CONNECTED is not onnxruntime's to refuse
    plan = resolve("convert", config=cfg, overrides=Overrides(runtime="ai-edge-litert==2.3.0"), out=tmp_path / "o")
    assert plan.runtime == RuntimePin("ai-edge-litert", "2.3.0", "--runtime")
    assert plan.config.target.runtime == "ai-edge-litert==2.3.0"  # echoed into the manifest's config
    with pytest.raises(TargetError, match=r"\[target\] runtime 'tflite-runtime>=2': pin one release with =="):
        resolve("convert", config=Config().replace("target", runtime="tflite-runtime>=2"))
    with pytest.raises(ConfigError, match="target.runtime must be a string"):
        Config.from_dict({"target": {"runtime": 2.14}})


def test_a_pinned_bundle_may_take_wheels_up_to_the_devices_own_glibc() -> None:
    """tflite-runtime 2.14's aarch64 wheel is manylinux_2_34: a device with glibc 2.36 reaches it; an
    unknown or older glibc keeps the default range (manylinux_2_31 down to manylinux2014)."""
    aarch64 = parse_platform("linux-aarch64")
    assert aarch64.reaching("2.36").tags[:3] == ("manylinux_2_36_aarch64", "manylinux_2_35_aarch64",
                                                  "manylinux_2_34_aarch64")
    assert aarch64.reaching("2.36").tags[-1] == "manylinux2014_aarch64"
    assert aarch64.reaching(None).tags == aarch64.reaching("2.28").tags == aarch64.tags
    assert aarch64.tags[0] == "manylinux_2_31_aarch64"

"""The resolved plan (``export.pipeline.plan``): built once per command, checked before any work, and
handed down whole; a bad format, recipe, budget, strategy or output directory fails at once, before
the commands that work (and TensorFlow) are even imported."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import cllnn_edge.distribute
import export.cli.args
import export.cli.commands
import export.formats.registry
import export.pipeline.plan
from cllnn_edge.config import Config
from cllnn_edge.errors import ConfigError
from export.cli.main import EXIT_USAGE, main
from export.errors import ExportError, TargetError
from export.formats.precision import Recipe
from export.formats.registry import FORMATS, parse_formats
from export.pipeline.plan import Overrides, Plan, resolve
from export.pipeline.run import _device_stages
from runtime.deploy.boards import BOARDS
from runtime.outputs import OutputPathError

ROOT = Path(__file__).resolve().parents[2]


def test_a_run_plan_holds_its_targets_parsed_in_the_order_given() -> None:
    plan = resolve("run", targets=("a76=emulated:cortex-a76", "box=ssh://me@127.0.0.1:2222"))
    assert [(name, spec.kind, spec.text) for name, spec in plan.targets] == [
        ("a76", "emulated", "emulated:cortex-a76"), ("box", "ssh", "ssh://me@127.0.0.1:2222")]


def test_the_formats_a_device_takes_resolve_once_from_the_flag_else_the_config_else_all(tmp_path: Path) -> None:
    targets = ("a72=emulated:cortex-a72",)
    assert resolve("run", targets=targets).target_formats is None  # default: every file
    config = tmp_path / "c.toml"
    config.write_text('[target]\nformats = ["tflite-int8", "onnx-fp32"]\n')
    from_config = resolve("run", config_file=config, targets=targets)
    assert from_config.target_formats == ("tflite-int8", "onnx-fp32")
    flag = resolve("run", config_file=config, targets=targets,
                   overrides=Overrides(target_formats=" tflite-dynamic,tflite-fp32,tflite-dynamic"))
    assert flag.target_formats == ("tflite-dynamic", "tflite-fp32")
    assert flag.config.target.formats == ("tflite-dynamic", "tflite-fp32")  # recorded as it ran
    assert resolve("run", targets=targets, overrides=Overrides(target_formats="all")).target_formats is None


def test_a_device_stage_key_holds_the_formats_it_takes_and_all_keeps_the_old_key() -> None:
    targets = ("a72=emulated:cortex-a72",)

    def key(text: str | None) -> str:
        plan = resolve("run", targets=targets, out=Path("/tmp/cllnn-plan-key"),
                       overrides=Overrides(target_formats=text))
        (stage,) = _device_stages(plan, "convert-key")
        return stage.key

    assert key(None) == key("all")
    assert len({key(None), key("tflite-int8"), key("tflite-int8,tflite-fp32")}) == 3


def test_a_plan_resolves_formats_recipe_budget_and_tolerances_once(tmp_path: Path) -> None:
    overrides = Overrides(formats="tflite-int8,tflite-mixed", recipe="cnn=float32", board="nano33-ble",
                          ram_kib=128, tolerances=("int8.min_top1=0.5",), epochs=3)
    plan = resolve("run", overrides=overrides, out=tmp_path / "run", data="embedded", strategy="one-device")
    assert [f.name for f in plan.formats] == ["tflite-int8", "tflite-mixed"]
    assert plan.formats[0] is FORMATS["tflite-int8"]  # registry entries, not names
    assert plan.formats[1].recipe == plan.recipe == Recipe.parse("cnn=float32")
    assert plan.config.export.formats == ("tflite-int8", "tflite-mixed")
    assert plan.config.export.recipe == Recipe.parse("cnn=float32").to_dict()
    assert plan.config.train.epochs == 3 and plan.config.tolerances["int8"].min_top1 == 0.5
    board = BOARDS["nano33-ble"]
    assert plan.budget.flash_bytes == board.flash_kib * 1024 and plan.budget.ram_bytes == 128 * 1024
    assert plan.strategy.strategy == "one-device" and plan.is_chief
    assert plan.layout.model == tmp_path / "run" / "train" / "model.keras"
    assert not (tmp_path / "run").exists()  # checked, not created
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.out = tmp_path  # type: ignore[misc]


def test_all_formats_are_spelled_out_and_the_config_recipe_stands_unless_a_flag_names_one() -> None:
    plan = resolve("convert")
    assert plan.formats == parse_formats("all")
    assert plan.config.export.formats == tuple(f.name for f in parse_formats("all"))
    assert plan.config.export.recipe == Config().export.recipe  # the config's own spelling, as recorded
    assert plan.budget is None and plan.strategy is None and plan.training_strategy.strategy == "one-device"


def test_a_sweep_plans_its_variants_as_its_formats() -> None:
    plan = resolve("sweep", overrides=Overrides(variants="tflite-fp32,tflite-mixed:cnn=float32"))
    assert [f.name for f in plan.formats] == ["tflite-fp32", "tflite-mixed-f32-i8-i8-i8"]


@pytest.mark.parametrize(
    ("command", "kwargs", "error", "message"),
    [
        ("run", {"overrides": Overrides(formats="tflite-int8,coreml")}, ExportError, "unknown format(s) ['coreml']"),
        ("run", {"overrides": Overrides(recipe="cnn=int4")}, ExportError, "unknown precision(s) {'cnn': 'int4'}"),
        ("run", {"config": Config().replace("export", recipe={"conv": "int8"})}, ExportError,
         "unknown stage(s) ['conv']"),
        ("convert", {"overrides": Overrides(board="uno")}, ExportError, "unknown board 'uno'"),
        ("convert", {"overrides": Overrides(flash_kib=0)}, ValueError, "flash_kib must be a positive whole number"),
        ("sweep", {"overrides": Overrides(variants="tflite-fp32:cnn=int8")}, ExportError, "has a fixed precision"),
        ("train", {"strategy": "gpu"}, ConfigError, "strategy must be one of"),
        ("run", {"out": Path("/proc/cllnn-plan")}, OutputPathError, "/proc is not writable"),
        ("parity", {"report_files": {"--json": Path("/no/such/dir/p.json")}}, OutputPathError,
         "--json /no/such/dir/p.json"),
        ("run", {"targets": ("pi=ssh://pi@board", "pi=emulated:cortex-a76")}, TargetError,
         "the name 'pi' is given 2 times"),
        ("run", {"targets": ("pi=emulated:cortex-a9",)}, TargetError, "unknown emulated CPU 'cortex-a9'"),
        ("run", {"targets": ("../up=local",)}, TargetError, "--target takes NAME=TARGET with NAME a plain word"),
        ("run", {"targets": ("pi=local",), "overrides": Overrides(target_formats="tflite-int9")}, TargetError,
         "--target-formats: tflite-int9: not among the formats this run exports (tflite-fp32, "),
        ("run", {"targets": ("pi=local",), "overrides": Overrides(formats="tflite-int8", target_formats="tflite-fp32")},
         TargetError, "--target-formats: tflite-fp32: not among the formats this run exports (tflite-int8)"),
        ("run", {"targets": ("pi=local",), "config": Config().replace("target", formats=("onnx-int9",))}, TargetError,
         "[target] formats: onnx-int9: not among"),
        ("run", {"overrides": Overrides(target_formats=",")}, ConfigError, "target.formats must be a non-empty list"),
    ],
)
def test_a_bad_input_fails_when_the_plan_is_made(command: str, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        resolve(command, **kwargs)
    assert message in str(caught.value)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> tuple[Counter, list[Plan], list[Plan]]:
    """Spies on the real functions: how often each part of a plan is resolved, the plans the CLI made
    and the plans ``run_pipeline`` received."""
    calls: Counter[str] = Counter()
    made: list[Plan] = []
    received: list[Plan] = []

    def spy(name: str, real, keep: list | None = None):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            result = real(*args, **kwargs)
            if keep is not None:
                keep.append(result)
            return result
        return wrapper

    real_pipeline = export.cli.commands.run_pipeline

    def pipeline(plan: Plan, **kwargs):
        received.append(plan)
        return real_pipeline(plan, **kwargs)

    real_parse, real_from_toml = Recipe.parse.__func__, Config.from_toml.__func__
    monkeypatch.setattr(export.cli.args, "resolve", spy("resolve", resolve, made))
    monkeypatch.setattr(export.pipeline.plan, "parse_formats", spy("parse_formats", parse_formats))
    monkeypatch.setattr(export.formats.registry, "parse_formats", spy("parse_formats", parse_formats))
    monkeypatch.setattr(cllnn_edge.distribute, "plan", spy("strategy", cllnn_edge.distribute.plan))
    monkeypatch.setattr(export.pipeline.plan, "check_output_dir",
                        spy("check_output_dir", export.pipeline.plan.check_output_dir))
    monkeypatch.setattr(Recipe, "parse", classmethod(spy("recipe", real_parse)))
    monkeypatch.setattr(Config, "from_toml", classmethod(spy("from_toml", real_from_toml)))
    monkeypatch.setattr(export.cli.commands, "run_pipeline", pipeline)
    return calls, made, received


def test_run_builds_its_plan_once_and_hands_it_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], counted
) -> None:
    """One ``cllnn-export run``: the config file read once, the formats, the recipe and the strategy
    resolved once, the output directory checked once; ``run_pipeline`` gets that very plan (here it
    stops at the data source, which only loading can find missing)."""
    calls, made, received = counted
    config = tmp_path / "run.toml"
    config.write_text('[export]\nformats = ["tflite-int8", "tflite-mixed"]\n')
    code = main(["run", "--config", str(config), "--data", str(tmp_path / "nowhere.npz"), "--out",
                 str(tmp_path / "run"), "--board", "nano33-ble"])
    assert code == EXIT_USAGE and "nowhere.npz" in capsys.readouterr().err
    assert calls == {"resolve": 1, "from_toml": 1, "parse_formats": 1, "recipe": 1, "strategy": 1,
                     "check_output_dir": 1}, calls
    assert len(made) == 1 and received == made and received[0] is made[0]
    assert received[0].budget is not None and received[0].config_file == config


def test_convert_parses_its_recipe_and_formats_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     counted) -> None:
    calls, made, _ = counted
    code = main(["convert", str(tmp_path / "absent.keras"), "--out", str(tmp_path / "out"),
                 "--formats", "tflite-mixed", "--recipe", "reservoir=int16x8"])
    assert code == EXIT_USAGE and "model file not found" in capsys.readouterr().err
    assert (calls["resolve"], calls["parse_formats"], calls["recipe"]) == (1, 1, 1), calls
    assert made[0].formats[0].recipe == Recipe.parse("reservoir=int16x8")


COLD_FAILURE = """
import sys
from export.cli.main import main
code = main(sys.argv[1:])
print("exit", code, "loaded:", sorted(m for m in ("tensorflow", "keras", "export.cli.commands") if m in sys.modules))
"""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["convert", "m.keras", "--out", "{tmp}/o", "--formats", "coreml"], "unknown format(s) ['coreml']"),
        (["run", "--out", "{tmp}/o", "--recipe", "lstm=int3"], "unknown precision(s) {'lstm': 'int3'}"),
        (["sweep", "m.keras", "--out", "{tmp}/o", "--board", "uno"], "unknown board 'uno'"),
        (["sweep", "m.keras", "--out", "{tmp}/o", "--variants", "onnx-mixed"], "onnx-mixed needs a recipe"),
        (["train", "--out", "/proc/cllnn-o"], "--out /proc/cllnn-o cannot be written"),
        (["run", "--out", "{tmp}/o", "--strategy", "gpu"], "strategy must be one of"),
        (["run", "--out", "{tmp}/o", "--target", "pi"], "--target takes NAME=TARGET"),
        (["run", "--out", "{tmp}/o", "--target", "pi=local", "--target-formats", "tflite-int9"],
         "--target-formats: tflite-int9: not among the formats this run exports"),
    ],
)
def test_a_bad_input_exits_2_before_the_commands_or_tensorflow_load(tmp_path: Path, argv: list[str],
                                                                     message: str) -> None:
    done = subprocess.run([sys.executable, "-c", COLD_FAILURE, *(a.format(tmp=tmp_path) for a in argv)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "exit 2 loaded: []" in done.stdout, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "o").exists()


def test_help_loads_no_tensorflow() -> None:
    script = ("import sys\nfrom export.cli.main import main\ntry:\n    main(['run', '--help'])\n"
              "except SystemExit:\n    pass\nprint('loaded:', sorted(m for m in ('tensorflow', 'keras', "
              "'export.cli.commands') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "--strategy" in done.stdout and "loaded: []" in done.stdout, done.stdout + done.stderr

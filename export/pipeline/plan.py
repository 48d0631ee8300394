"""The resolved plan of one command: its arguments and config turned, once, into one checked object.

``resolve`` reads the config file (or takes a ``Config``), applies what the command line sets over it
(``Overrides``), and resolves everything the work below needs: the formats as registry entries (a
sweep's variants, ``export.pipeline.variants``), the recipe, the microcontroller budget, the
``tf.distribute`` strategy (``cllnn_edge.distribute.plan``), the output directory and, for ``run``,
its layout (``export.layout.RunLayout``) and the devices it also runs on (``--target NAME=TARGET``,
parsed, not contacted). Every check that needs no data or model happens here, so a
bad format, recipe, board, strategy or output path fails before any work and creates nothing. The
``Plan`` is frozen and handed down: nothing below it reads ``argparse`` arguments, parses a format
name or a recipe, or checks the output directory again.

It lives in ``export.pipeline``, not ``export.cli``, because the pipeline takes it (``run_pipeline``)
and sub-packages import one way (pipeline < cli); a library caller builds one without argparse.
Light on purpose: it loads neither TensorFlow nor a converter (``cllnn-export --help`` imports it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cllnn_edge import distribute
from cllnn_edge.config import Config, check_fits_in_memory
from cllnn_edge.errors import ConfigError
from export.errors import TargetError
from export.formats.mcu import memory_budget
from export.formats.precision import Recipe
from export.formats.registry import ALL, Format, parse_formats
from export.layout import RunLayout
from export.pipeline.variants import parse_variants
from export.targets.runtime_pin import RuntimePin
from export.targets.spec import TargetSpec, parse_named_target
from runtime.artifacts.manifest import format_names
from runtime.deploy.boards import MemoryBudget, budget_for
from runtime.outputs import check_output_dir, check_output_file

TRAINING_COMMANDS = ("train", "run")  # they train: the model must fit in this machine's memory
SWEEP = "sweep"  # its formats are its variants (``--variants``), not ``[export] formats``
DEFAULT_DATA = "embedded"  # the data source of a training plan that names none


@dataclass(frozen=True)
class Overrides:
    """What a command line sets over the config file (None / empty: the config's value stands)."""

    epochs: int | None = None
    formats: str | None = None  # "tflite-int8,onnx-fp32" or "all"
    calibration_size: int | None = None
    recipe: str | None = None  # "reservoir=int16x8,cnn=float32"
    board: str | None = None
    flash_kib: int | None = None  # a flag of 0 is an error (in a config file, 0 means "not given")
    ram_kib: int | None = None
    tolerances: tuple[str, ...] = ()  # "PRECISION.LIMIT=VALUE" each
    variants: str | None = None  # a sweep's, ``export.pipeline.variants``
    runtime: str | None = None  # "tflite-runtime==2.14": ``[target] runtime``
    target_formats: str | None = None  # "tflite-int8,tflite-fp32" or "all": ``[target] formats``


@dataclass(frozen=True)
class Plan:
    """Everything a command's work needs, resolved and checked."""

    command: str
    config: Config  # the overrides applied; ``export.formats`` spelled out ("all" becomes the names)
    formats: tuple[Format, ...]  # registry entries, the recipe formats built from ``recipe``; a sweep's variants
    recipe: Recipe  # ``[export] recipe``, parsed
    budget: MemoryBudget | None  # the microcontroller budget the TFLM files must fit
    strategy: distribute.Plan | None = None  # where the command trains
    out: Path | None = None  # checked: a writable directory, or one that can be created
    data: str | None = None  # the data source as given (None: the command's default)
    config_file: Path | None = None  # where ``config`` came from, for reproduce commands
    targets: tuple[tuple[str, TargetSpec], ...] = ()  # ``run --target``: (devices/NAME, its target), in order
    runtime: RuntimePin | None = None  # ``[target] runtime`` / ``--runtime``: the files must load on it
    target_formats: tuple[str, ...] | None = None  # ``[target] formats`` / ``--target-formats`` (None: all)

    @property
    def layout(self) -> RunLayout:
        """The run directory's layout (``run``: ``out`` holds it)."""
        if self.out is None:
            raise ConfigError(f"{self.command}: the plan has no output directory")
        return RunLayout(self.out)

    @property
    def source(self) -> str:
        """The data source to load: the one given, else ``DEFAULT_DATA``."""
        return self.data or DEFAULT_DATA

    @property
    def training_strategy(self) -> distribute.Plan:
        """The resolved strategy train takes as it is (never planned again); one-device where the plan
        names none."""
        return self.strategy if self.strategy is not None else distribute.Plan(distribute.ONE_DEVICE, cluster=None)

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the results (always, but for a non-chief multi-worker task)."""
        return self.strategy is None or self.strategy.is_chief


def resolve(
    command: str,
    *,
    config: Config | None = None,
    config_file: Path | None = None,
    overrides: Overrides = Overrides(),
    data: str | None = None,
    out: Path | None = None,
    report_files: Mapping[str, Path | None] | None = None,
    strategy: str | None = None,
    targets: tuple[str, ...] = (),
) -> Plan:
    """The plan of ``command``: ``config`` (else the TOML ``config_file``, else the defaults) with
    ``overrides`` applied, everything checked. ``out``: the output directory (checked, not created);
    ``report_files``: flag -> a report file it writes (``--json``: checked); ``strategy``: a
    ``cllnn_edge.distribute`` name, for a command that trains; ``targets``: ``NAME=TARGET`` each (names
    unique). Raises the toolkit's errors (exit 2)."""
    how = distribute.plan(strategy) if strategy is not None else None  # a bad TF_CONFIG fails first
    cfg = config if config is not None else Config.from_toml(config_file) if config_file else Config()
    cfg, chosen, recipe = _with_overrides(cfg, overrides)
    budget = memory_budget(cfg)  # so does an unknown board
    cfg = _with_tolerances(cfg, overrides.tolerances)
    formats = (parse_variants(overrides.variants) if command == SWEEP
               else tuple(f.with_recipe(recipe) if f.takes_recipe else f for f in chosen))
    if out is not None:
        out = check_output_dir(out, "--out")
    for flag, path in (report_files or {}).items():
        if path is not None:
            check_output_file(path, flag)
    if command in TRAINING_COMMANDS:
        check_fits_in_memory(cfg.model)
    named = _named_targets(targets)
    return Plan(command=command, config=cfg, formats=formats, recipe=recipe, budget=budget, strategy=how,
                out=out, data=data, config_file=config_file, targets=named,
                runtime=_runtime(overrides.runtime, cfg),
                target_formats=_target_formats(overrides.target_formats, cfg, formats, bool(named)))


def _named_targets(texts: tuple[str, ...]) -> tuple[tuple[str, TargetSpec], ...]:
    """Each ``NAME=TARGET`` parsed; two targets may not share a ``devices/NAME``."""
    named = tuple(parse_named_target(text) for text in texts)
    names = [name for name, _ in named]
    for name in names:
        if names.count(name) > 1:
            raise TargetError(f"--target: the name {name!r} is given {names.count(name)} times; each device "
                              f"needs its own (it becomes devices/{name}/)")
    return named


def _with_overrides(cfg: Config, flags: Overrides) -> tuple[Config, tuple[Format, ...], Recipe]:
    """``cfg`` with the flags' values, the formats it names (parsed once, spelled out in it) and its
    recipe (the flag's, else the config's: parsed once; a bad one fails here)."""
    if flags.epochs is not None:
        cfg = cfg.replace("train", epochs=flags.epochs)
    if flags.runtime is not None:
        cfg = cfg.replace("target", runtime=flags.runtime)
    if flags.target_formats is not None:
        cfg = cfg.replace("target", formats=format_names(flags.target_formats) or ())
    chosen = parse_formats(flags.formats or cfg.export.formats)
    cfg = cfg.replace("export", formats=tuple(f.name for f in chosen))
    if flags.calibration_size is not None:
        cfg = cfg.replace("export", calibration_size=flags.calibration_size)
    recipe = Recipe.parse(flags.recipe if flags.recipe is not None else cfg.export.recipe)
    if flags.recipe is not None:
        cfg = cfg.replace("export", recipe=recipe.to_dict())
    figures = {name: value for name, value in
               (("board", flags.board), ("flash_kib", flags.flash_kib), ("ram_kib", flags.ram_kib))
               if value is not None}
    sizes = {name: value for name, value in figures.items() if name != "board"}
    if sizes:  # the flags' own check: 0 is refused here (in a config file, 0 means "not given")
        budget_for(**sizes)
    return (cfg.replace("export", **figures) if figures else cfg), chosen, recipe


def _runtime(flag: str | None, cfg: Config) -> RuntimePin | None:
    """``[target] runtime`` (the flag already applied to it), parsed once; "" is none."""
    text = cfg.target.runtime
    return RuntimePin.parse(text, "--runtime" if flag is not None else "[target] runtime") if text else None


def _target_formats(flag: str | None, cfg: Config, exported: tuple[Format, ...],
                    checked: bool) -> tuple[str, ...] | None:
    """``[target] formats`` (the flag already applied to it), parsed once: None for all. With devices to
    run on (``checked``), each name must be one the run exports, so a typo fails before training, not
    at the device stage an hour later (which checks the run's manifest again)."""
    names = format_names(cfg.target.formats)
    if names == (ALL,):
        return None
    where = "--target-formats" if flag is not None else "[target] formats"
    made = [f.name for f in exported]
    unknown = [name for name in names or () if name not in made]
    if checked and (unknown or not names):
        raise TargetError(f"{where}: {', '.join(unknown) or 'no format named'}: not among the formats this run "
                          f"exports ({', '.join(made)}); name some of those, or 'all'")
    return names


def _with_tolerances(cfg: Config, assignments: tuple[str, ...]) -> Config:
    """``cfg`` with each ``PRECISION.LIMIT=VALUE`` applied to its tolerance table."""
    if not assignments:
        return cfg
    tolerances = cfg.tolerances
    for assignment in assignments:
        tolerances = tolerances.override(assignment)
    return cfg.replace("tolerances", rows=tolerances.rows)

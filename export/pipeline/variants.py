"""What a precision sweep is asked: its variants (``--variants`` parsed into registry formats, and the
defaults) and how many timed calls each file gets.

Apart from ``export.pipeline.sweep`` because the plan (``export.pipeline.plan``) resolves a sweep's
variants before any work and ``cllnn-export --help`` shows these defaults, while the sweep's module
loads TensorFlow (it converts); this one reads only the format registry, so a bad name fails at once.
"""

from __future__ import annotations

from export.errors import ExportError
from export.formats.precision import Recipe
from export.formats.registry import ALL, FORMATS, RECIPE_FORMATS, Format, parse_formats

BENCH_RUNS = 100  # timed calls per variant at batch 1: p50 settles well before, and the sweep stays short
# --variants syntax: variants separated by ",", a recipe after ":", its stage assignments joined
# by ";" or "+" (the recipe's own "," would split the list; "+" needs no shell quoting).
VARIANT_SEP, RECIPE_SEP, STAGE_SEPS = ",", ":", (";", "+")
VARIANTS_HELP = (
    "comma-separated variants: a format name, 'all' (the fixed-precision formats), or a recipe "
    "format with its recipe after ':', stages joined by ';' or '+', e.g. "
    "'tflite-fp32,tflite-mixed:cnn=float32+reservoir=int16x8' (unnamed stages are int8)"
)
DEFAULT_RECIPES = (  # the mixes benchmarks/PRECISION.md found closest to the trained model, and a float CNN
    ("tflite-mixed", "cnn=int16x8,reservoir=int16x8,lstm=int16x8,head=int16x8"),  # i16-i16-i16-i16, one matrix
    ("tflite-mixed", "cnn=int16x8,reservoir=int16x8"),  # i16-i16-i8-i8, the [export] recipe default
    ("tflite-mixed", "cnn=float32"),  # f32-i8-i8-i8
    ("onnx-mixed", "cnn=int16x8,reservoir=int16x8"),
)


def default_variants() -> tuple[Format, ...]:
    """The fixed-precision formats and a few per-stage mixes (the reservoir, the CNN kept finer)."""
    mixes = tuple(FORMATS[name].with_recipe(Recipe.parse(spec), variant=True) for name, spec in DEFAULT_RECIPES)
    return parse_formats(ALL) + mixes


def parse_variants(spec: str | None) -> tuple[Format, ...]:
    """``--variants`` -> formats, duplicates dropped, in order; None: ``default_variants()``.
    Raises ``ExportError`` naming the bad item before any work."""
    if spec is None:
        return default_variants()
    chosen: dict[str, Format] = {}
    for item in (part.strip() for part in spec.split(VARIANT_SEP)):
        if not item:
            continue
        for fmt in _variant(item):
            chosen.setdefault(fmt.name, fmt)
    if not chosen:
        raise ExportError(f"--variants names no variant: {spec!r}; {VARIANTS_HELP}")
    return tuple(chosen.values())


def _variant(item: str) -> tuple[Format, ...]:
    name, sep, recipe = (part.strip() for part in item.partition(RECIPE_SEP))
    if name == ALL and not sep:
        return parse_formats(ALL)
    if name not in FORMATS:
        raise ExportError(f"unknown format {name!r} in --variants item {item!r}; choose from "
                          f"{', '.join(FORMATS)} (or '{ALL}')")
    fmt = FORMATS[name]
    if not fmt.takes_recipe:
        if sep:
            raise ExportError(f"{name} has a fixed precision and takes no recipe (got {item!r}); "
                              f"recipes apply to {', '.join(RECIPE_FORMATS)}")
        return (fmt,)
    if not recipe:
        raise ExportError(f"{name} needs a recipe: {name}{RECIPE_SEP}reservoir=int16x8 (got {item!r})")
    for stage_sep in STAGE_SEPS:
        recipe = recipe.replace(stage_sep, ",")
    return (fmt.with_recipe(Recipe.parse(recipe), variant=True),)

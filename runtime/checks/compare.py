"""One comparator: reference outputs against a candidate's, under one row of the tolerance table.

The unroller's equivalence proof, ``convert``'s export-time checks, the
``parity`` gate and a device's ``cllnn-bench verify`` all call ``compare``:
outputs are probabilities, stages are matched by name (the export names them,
``export.graph.reference.STAGES``), and the result is data, including the stage
where most of the error enters (``Comparison.main_error_stage``, the one
place that attribution is made). numpy only, so it lives
in ``runtime`` where a device can run it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from runtime.artifacts.manifest import CheckRecord
from runtime.checks.metrics import accuracy_drop, probability_metrics
from runtime.checks.tolerances import Tolerance


@dataclass(frozen=True)
class Check:
    """One limit: the measured value, the limit and the verdict."""

    name: str
    value: float
    limit: float
    rule: str  # "<=" or ">="
    passed: bool

    def record(self) -> CheckRecord:
        """As the manifest keeps an export-time check."""
        return CheckRecord(passed=self.passed, value=self.value, expected=f"{self.rule} {self.limit:g}")


@dataclass(frozen=True)
class StageResult:
    stage: str
    max_abs: float
    nrmse: float  # RMSE / standard deviation of the reference stage
    limit: float
    passed: bool


@dataclass(frozen=True)
class StageContribution:
    """The stage where most of a file's output error enters: the one to keep at higher precision."""

    stage: str
    rise: float  # its normalised RMSE minus the previous stage's (the first stage: its own)
    share: float  # rise / the sum of every stage's positive rise, in (0, 1]

    def describe(self) -> str:
        """The phrase every report and progress line uses, so they all read alike."""
        return f"{self.stage} ({100 * self.share:.0f}% of the rise in normalised RMSE)"


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """How a candidate's probabilities (and, where given, its stages) compare with the reference's."""

    metrics: dict[str, float]
    checks: tuple[Check, ...]
    stages: tuple[StageResult, ...] = ()

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def first_failing_stage(self) -> str | None:
        return next((s.stage for s in self.stages if not s.passed), None)

    @property
    def main_error_stage(self) -> StageContribution | None:
        """The stage whose normalised RMSE rises most over the previous stage's, or None (no stages, no error).

        A stage probe's outputs carry the error of every stage before them, so a
        stage's own contribution is the rise over its predecessor; NRMSE divides
        by each reference stage's spread, so rises compare across stages of
        different scales. The stages are in the model's order (``compare`` keeps
        the reference's). The first stage whose NRMSE is not finite (NaN or inf
        outputs) takes all of the error: rise inf, share 1.
        """
        rises: list[tuple[str, float]] = []
        previous = 0.0
        for result in self.stages:
            if not math.isfinite(result.nrmse):
                return StageContribution(result.stage, math.inf, 1.0)
            rises.append((result.stage, result.nrmse - previous))
            previous = result.nrmse
        total = sum(rise for _, rise in rises if rise > 0)
        if total <= 0:
            return None
        stage, rise = max(rises, key=lambda item: item[1])
        return StageContribution(stage, rise, rise / total)


def compare(
    reference: Mapping[str, np.ndarray],
    probabilities: np.ndarray,
    tolerance: Tolerance,
    *,
    labels: np.ndarray | None = None,
    stages: Mapping[str, np.ndarray] | None = None,
) -> Comparison:
    """Compare ``probabilities`` with ``reference["output"]`` under ``tolerance``.

    ``reference`` maps stage names to the reference's outputs; ``stages``, the
    candidate's (a stage probe's), is compared stage by stage wherever a name
    is in both, in the reference's order. ``labels`` add the accuracies and
    the accuracy-drop check. Limits the tolerance leaves as None are not checked.
    """
    metrics = probability_metrics(reference["output"], probabilities, labels)
    checks = []
    if tolerance.max_abs is not None:
        checks.append(_at_most("max_abs", metrics["max_abs"], tolerance.max_abs))
    if tolerance.min_top1 is not None:
        top1 = metrics["top1_agreement"]
        checks.append(Check("top1_agreement", top1, tolerance.min_top1, ">=", top1 >= tolerance.min_top1))
    if tolerance.max_accuracy_drop is not None and labels is not None:
        checks.append(_at_most("accuracy_drop", accuracy_drop(metrics), tolerance.max_accuracy_drop))
    return Comparison(metrics=metrics, checks=tuple(checks),
                      stages=_stages(reference, stages or {}, tolerance.stage_nrmse))


def _at_most(name: str, value: float, limit: float) -> Check:
    return Check(name, value, limit, "<=", value <= limit)


def _stages(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], limit: float | None
) -> tuple[StageResult, ...]:
    if limit is None:  # the row locates no stage
        return ()
    results = []
    for stage, ref in reference.items():
        if stage not in candidate:
            continue
        ref64 = np.asarray(ref, np.float64)
        got64 = np.asarray(candidate[stage], np.float64).reshape(ref64.shape)
        error = ref64 - got64
        spread = float(ref64.std()) or 1.0
        nrmse = float(np.sqrt(np.mean(error**2)) / spread)
        results.append(StageResult(stage, float(np.abs(error).max()), nrmse, limit, nrmse <= limit))
    return tuple(results)

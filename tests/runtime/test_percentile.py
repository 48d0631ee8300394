"""One definition of a percentile (runtime.bench.latency.percentile) for runtime's figures and the
benchmarks': linear interpolation between the closest ranks, checked on lists worked out by hand."""

from __future__ import annotations

import pytest

from benchmarks.common import summary
from runtime.bench.latency import percentile


@pytest.mark.parametrize(("q", "expected"), [(0, 1.0), (50, 2.5), (90, 3.7), (99, 3.97), (100, 4.0)])
def test_percentiles_interpolate_between_ranks(q: float, expected: float) -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], q) == pytest.approx(expected, abs=1e-12)


def test_p99_of_a_hundred_samples_lies_between_the_two_largest() -> None:
    samples = [float(v) for v in range(1, 101)]  # 1 .. 100: rank 0.99 * 99 = 98.01
    assert percentile(samples, 99) == pytest.approx(99.01)


def test_the_benchmarks_use_the_same_definition() -> None:
    samples = [12.0, 10.0, 11.0, 50.0]
    figures = summary(samples)
    assert figures["p50_us"] == percentile(samples, 50) == 11.5
    assert figures["p99_us"] == percentile(samples, 99) == pytest.approx(48.86)  # 12 + 0.97 * 38; nearest-rank said 50
    assert figures["calls"] == 4 and figures["mean_us"] == 20.75


@pytest.mark.parametrize(("samples", "q"), [([], 50), ([1.0], 101), ([1.0], -1)])
def test_no_samples_or_a_q_out_of_range_is_refused(samples: list[float], q: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile(samples, q)

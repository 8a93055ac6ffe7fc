"""The closing section: which differences between groups are significant, in words.

A difference is significant when the 95% bootstrap interval of (group A − group B) excludes
zero. Both groups were resampled independently with runs as the unit, so the difference of
their i-th replicates is a bootstrap replicate of the difference. Each group needs a few
runs behind the metric first: with one or two, a bootstrap only echoes the sample.

Without a reference every pair of groups is tested; with one, every group against it. The
level is per test, not corrected for the number of tests: with many metrics a few crossings
are expected by chance, which the report says next to the count.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

from analyzer.compare.definitions import MetricSpec
from analyzer.compare.formatting import format_difference, format_value
from analyzer.compare.model import Difference
from analyzer.compare.stats import Bootstrapped, difference_interval

MIN_RUNS_FOR_TEST = 5
"""Runs each group needs behind a metric before a difference in it is judged."""


def group_pairs(groups: Sequence[str], reference: str | None) -> list[tuple[str, str]]:
    """The pairs to test: each group against the reference, else every pair."""
    if reference is not None:
        return [(reference, g) for g in groups if g != reference]
    return list(combinations(groups, 2))


def judge_metric(
    spec: MetricSpec, results: dict[str, Bootstrapped], pairs: Sequence[tuple[str, str]]
) -> tuple[int, list[Difference]]:
    """How many pairs could be tested on this metric, and the significant differences."""
    tested = 0
    found: list[Difference] = []
    for a, b in pairs:
        ra, rb = results.get(a), results.get(b)
        if ra is None or rb is None or ra.value is None or rb.value is None:
            continue
        if min(ra.units, rb.units) < MIN_RUNS_FOR_TEST:
            continue
        tested += 1
        interval = difference_interval(ra.replicates, rb.replicates)
        if interval is None:
            continue
        lo, hi = interval
        point = ra.value - rb.value
        # The interval must exclude zero on the side the point estimate is on.
        if not ((lo > 0 and point > 0) or (hi < 0 and point < 0)):
            continue
        found.append(_difference(spec, a, ra.value, b, rb.value, lo, hi))
    return tested, found


def _difference(
    spec: MetricSpec, a: str, va: float, b: str, vb: float, lo: float, hi: float
) -> Difference:
    if va < vb:
        a, va, b, vb, lo, hi = b, vb, a, va, -hi, -lo
    better = None
    if spec.better == "higher":
        better = a
    elif spec.better == "lower":
        better = b
    text = (
        f"{spec.label}: {a} {format_value(va, spec.unit)} vs {b} {format_value(vb, spec.unit)} "
        f"({format_difference(va - vb, spec.unit)}, 95% CI "
        f"{format_difference(lo, spec.unit, suffix=False)} to {format_difference(hi, spec.unit)})"
    )
    text += f"; {better} does better." if better else "."
    return Difference(
        metric=spec.key,
        label=spec.label,
        unit=spec.unit,
        higher=a,
        lower=b,
        higher_value=va,
        lower_value=vb,
        difference=va - vb,
        lo=lo,
        hi=hi,
        better=better,
        text=text,
    )

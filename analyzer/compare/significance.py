"""The closing section: which differences between groups are significant, in words.

Every (metric, pair of groups) that can be judged is one test of "no difference". Its
p-value comes from the bootstrap replicates of the difference: twice the share of
replicates on the far side of zero from the point estimate ((k + 1) / (R + 1), so never
0). Runs are the resampled unit, the two groups resampled independently, except where the
pair answered the same requests (by request hash) and the metric is a rate defined per
request: then the shared requests are resampled, the same draw for both groups (a paired
bootstrap, see `paired`).

With dozens of metrics and several pairs, some tests would cross 5% by chance alone, so the
family of all tests of a comparison is corrected with Holm's step-down procedure at a
family-wise α of 5%: the smallest p-value must be below α/N, the next below α/(N−1), and so
on until one is not. The thresholds are far out in the tails, where a thousand replicates
cannot reach (their smallest p-value is 2/1001): a test that could pass gets more resamples,
enough to resolve α/N, within a budget of draws; beyond the budget (very large groups), its
p-value comes from the normal approximation with the bootstrap's standard error, and the
test says so. A difference is reported when Holm rejects it and its 95% interval excludes 0
on the side of the point estimate.

Without a reference every pair of groups is tested; with one, every group against it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Literal

from analyzer.compare.definitions import MetricSpec
from analyzer.compare.formatting import format_difference, format_value
from analyzer.compare.model import Difference
from analyzer.compare.numeric import np
from analyzer.compare.paired import PairedDifference
from analyzer.compare.stats import MIN_DEFINED_SHARE, Bootstrapped, Floats, difference_interval

MIN_RUNS_FOR_TEST = 5
"""Runs each group needs behind a metric before a difference in it is judged."""

FAMILY_ALPHA = 0.05
"""Family-wise error rate of all the tests of one comparison (Holm)."""

MAX_TEST_DRAWS = 4_000_000
"""Run draws a group may spend on a test's extra resamples (runs × resamples, a tenth of a
second or so). Beyond it (a few hundred runs and more), the normal approximation with the
bootstrap's standard error is used instead: the tails a percentile p-value needs are what
small samples get wrong, and large ones are where the normal approximation holds."""

Method = Literal["percentile", "normal"]

More = Callable[[str, Sequence[MetricSpec], int], dict[str, Floats] | None]
"""(group, metrics, resamples) -> each metric's replicates over that many resamples of the
group (None when the group is too large for them)."""


def group_pairs(groups: Sequence[str], reference: str | None) -> list[tuple[str, str]]:
    """The pairs to test: each group against the reference, else every pair."""
    if reference is not None:
        return [(reference, g) for g in groups if g != reference]
    return list(combinations(groups, 2))


@dataclass(frozen=True)
class Contrast:
    """One difference to judge: group a minus group b on one metric."""

    spec: MetricSpec
    a: str
    b: str
    value_a: float
    value_b: float
    replicates: Floats
    """(a − b) per bootstrap replicate, NaN where undefined."""
    requests: int | None = None
    """Shared requests resampled (paired test), None for a test over runs."""
    method: Method = "percentile"

    @property
    def point(self) -> float:
        """a − b over everything."""
        return self.value_a - self.value_b

    @property
    def paired(self) -> bool:
        """Whether the shared requests were resampled instead of runs."""
        return self.requests is not None

    def p_value(self) -> float | None:
        """Two-sided p-value of "no difference" (None: too few defined replicates)."""
        defined = self.replicates[~np.isnan(self.replicates)]
        if defined.size < MIN_DEFINED_SHARE * max(self.replicates.size, 1) or not defined.size:
            return None
        if self.method == "normal":
            spread = float(defined.std(ddof=1)) if defined.size > 1 else 0.0
            if spread == 0.0:
                return 0.0 if self.point != 0 else 1.0
            return math.erfc(abs(self.point) / spread / math.sqrt(2))
        far = np.count_nonzero(defined <= 0) if self.point > 0 else None
        if self.point < 0:
            far = np.count_nonzero(defined >= 0)
        if far is None:  # a point of exactly 0 is no evidence of a difference
            return 1.0
        return min(1.0, 2 * (int(far) + 1) / (defined.size + 1))

    def resolution(self) -> float:
        """The smallest p-value these replicates can give."""
        return 2 / (self.replicates.size + 1)


def run_test(
    spec: MetricSpec, a: str, ra: Bootstrapped, b: str, rb: Bootstrapped
) -> Contrast | None:
    """The test of a − b over independently resampled runs (None: a group lacks a value or
    enough runs behind it)."""
    if ra.value is None or rb.value is None:
        return None
    if min(ra.units, rb.units) < MIN_RUNS_FOR_TEST:
        return None
    return Contrast(spec, a, b, ra.value, rb.value, ra.replicates - rb.replicates)


def paired_test(spec: MetricSpec, a: str, b: str, paired: PairedDifference) -> Contrast:
    """The test of a − b over resampled shared requests."""
    return Contrast(
        spec, a, b, paired.value_a, paired.value_b, paired.replicates, requests=paired.requests
    )


def resamples_for(tests: int, alpha: float = FAMILY_ALPHA) -> int:
    """Resamples whose smallest p-value (2 / (R + 1)) is half Holm's first threshold α/N."""
    return math.ceil(4 * max(tests, 1) / alpha)


def refine(
    tests: list[Contrast], more: More, resamples: int, alpha: float = FAMILY_ALPHA
) -> list[Contrast]:
    """Tests over runs whose p-value is too coarse to be judged against α/N, redone with
    more resamples (or the normal approximation when their groups are too large)."""
    wanted = resamples_for(len(tests), alpha)
    if wanted <= resamples:
        return tests
    needing: dict[str, dict[str, MetricSpec]] = {}
    for test in tests:
        p = test.p_value()
        # Tests already clearly above α cannot become significant with more resamples.
        if (
            p is not None
            and not test.paired
            and p < 2 * alpha
            and test.resolution() > alpha / len(tests)
        ):
            for group in (test.a, test.b):
                needing.setdefault(group, {})[test.spec.key] = test.spec
    redone: dict[str, dict[str, Floats] | None] = {
        group: more(group, list(specs.values()), wanted) for group, specs in needing.items()
    }
    out: list[Contrast] = []
    for test in tests:
        key = test.spec.key
        if test.paired or key not in needing.get(test.a, {}) or key not in needing.get(test.b, {}):
            out.append(test)
            continue
        ra, rb = redone.get(test.a), redone.get(test.b)
        if ra is None or rb is None or key not in ra or key not in rb:
            out.append(replace(test, method="normal"))
        else:
            out.append(replace(test, replicates=ra[key] - rb[key]))
    return out


def holm(
    p_values: Sequence[float | None], alpha: float = FAMILY_ALPHA
) -> list[tuple[bool, float | None]]:
    """Holm's step-down procedure: for each p-value, whether it is rejected at family-wise
    `alpha`, and its Holm-adjusted p-value (None stays None, never rejected)."""
    known = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    n = len(known)
    out: list[tuple[bool, float | None]] = [(False, None)] * len(p_values)
    running = 0.0
    rejecting = True
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (n - rank) * p))
        rejecting = rejecting and p <= alpha / (n - rank)
        out[i] = (rejecting, running)
    return out


def judge(tests: list[Contrast], alpha: float = FAMILY_ALPHA) -> list[Difference]:
    """The differences among `tests` that Holm rejects and whose 95% interval excludes 0."""
    p_values = [t.p_value() for t in tests]
    found: list[Difference] = []
    for test, p, (rejected, adjusted) in zip(tests, p_values, holm(p_values, alpha), strict=True):
        if not rejected or p is None or adjusted is None:
            continue
        interval = difference_interval(test.replicates, np.zeros_like(test.replicates))
        if interval is None:
            continue
        lo, hi = interval
        if not ((lo > 0 and test.point > 0) or (hi < 0 and test.point < 0)):
            continue
        found.append(_difference(test, lo, hi, p, adjusted))
    return found


def judge_metric(
    spec: MetricSpec, results: dict[str, Bootstrapped], pairs: Sequence[tuple[str, str]]
) -> tuple[int, list[Difference]]:
    """One metric on its own: how many pairs could be tested, and the significant
    differences (Holm-corrected across those pairs only)."""
    tests = []
    for a, b in pairs:
        ra, rb = results.get(a), results.get(b)
        test = run_test(spec, a, ra, b, rb) if ra is not None and rb is not None else None
        if test is not None:
            tests.append(test)
    return len(tests), judge(tests)


def _difference(test: Contrast, lo: float, hi: float, p: float, adjusted: float) -> Difference:
    spec = test.spec
    a, va, b, vb = test.a, test.value_a, test.b, test.value_b
    if va < vb:
        a, va, b, vb, lo, hi = b, vb, a, va, -hi, -lo
    better = None
    if spec.better == "higher":
        better = a
    elif spec.better == "lower":
        better = b
    on = f" on {test.requests} requests both answered" if test.requests is not None else ""
    text = (
        f"{spec.label}: {a} {format_value(va, spec.unit)} vs {b} {format_value(vb, spec.unit)}"
        f"{on} ({format_difference(va - vb, spec.unit)}, 95% CI "
        f"{format_difference(lo, spec.unit, suffix=False)} to {format_difference(hi, spec.unit)}"
        f", Holm-adjusted p {_format_p(adjusted)})"
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
        p_value=p,
        p_adjusted=adjusted,
        paired=test.paired,
        requests=test.requests,
        resamples=int(test.replicates.size),
        p_method=test.method,
    )


def _format_p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else "< 0.001"

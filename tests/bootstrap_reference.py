"""The bootstrap of `traces compare` as it was before it was vectorised (main at 8d7fdc7),
kept only as the reference tests/test_compare_identity.py checks the numpy one against:
the same seed must give the same draws, replicates, points and intervals.

Bootstrap intervals with runs as the unit of resampling.

Steps within a run are correlated (one bad template breaks every later step of the run), so
resampling steps would make intervals far too narrow. Every statistic here is a function of a
set of runs: a resample draws runs with replacement (within each task, so the task mix stays
the one that was recorded) and recomputes the statistic. Ratios such as schema_accuracy are
recomputed as ratios of sums over the resampled runs, never averaged per run.

The standard library is enough: per-run vectors are short (one value per run), picking a
resample's values goes through `itemgetter` at C speed, and each column is summed once per
resample however many rates share it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Protocol

CONFIDENCE = 0.95
"""Two-sided level of every interval."""

DEFAULT_RESAMPLES = 1_000
"""Bootstrap resamples per group: enough for stable 2.5/97.5 percentiles."""

_Z = 1.959963984540054
"""The standard normal quantile of a two-sided 95% interval."""

MIN_RUNS_FOR_INTERVAL = 2
"""Below this many contributing runs an interval would only echo the point: none is given."""

MIN_DEFINED_SHARE = 0.5
"""An interval needs the statistic defined on at least this share of resamples (a ratio whose
denominator is zero in most resamples has no meaningful spread)."""

Indices = Sequence[int]
Gather = Callable[[Sequence[float]], Sequence[float]]
"""Picks the values of one draw's runs out of a column (repeats included)."""


def _gatherer(draw: Indices) -> Gather:
    # itemgetter picks many items at C speed, but returns a bare item for one index.
    if len(draw) > 1:
        return itemgetter(*draw)
    return lambda column: [column[i] for i in draw]


class Sample:
    """One group's per-run columns and its bootstrap draws; sums over each draw are computed
    once per column and shared by every statistic that needs them (most rates share a
    denominator)."""

    def __init__(
        self,
        columns: Mapping[str, Sequence[float | None]],
        strata: Sequence[str],
        resamples: int,
        seed: str,
    ) -> None:
        """`columns`: one value per run (None: the run has none); `strata`: each run's task."""
        self.n = len(strata)
        self.columns = columns
        self.draws = resample_indices(strata, resamples, seed)
        self._gathers = [_gatherer(draw) for draw in self.draws]
        self._cache: dict[tuple[str, str], list[float]] = {}

    def zeros(self, name: str) -> list[float]:
        """The column with missing values as 0 (counts)."""
        key = ("zeros", name)
        if key not in self._cache:
            self._cache[key] = [v or 0.0 for v in self.columns[name]]
        return self._cache[key]

    def defined(self, name: str) -> list[float]:
        """1 where the run has a value, else 0."""
        key = ("defined", name)
        if key not in self._cache:
            self._cache[key] = [0.0 if v is None else 1.0 for v in self.columns[name]]
        return self._cache[key]

    def sums(self, name: str, *, defined: bool = False) -> list[float]:
        """Per draw, the sum of the column (or of its `defined` indicator)."""
        key = ("sums:defined" if defined else "sums", name)
        if key not in self._cache:
            column = self.defined(name) if defined else self.zeros(name)
            self._cache[key] = [sum(gather(column)) for gather in self._gathers]
        return self._cache[key]

    def gathers(self) -> list[Gather]:
        """One picker per draw."""
        return self._gathers


class Statistic(Protocol):
    """A number computed from a group's runs, on all of them and on each bootstrap draw."""

    def point(self, sample: Sample) -> float | None:
        """The statistic over all runs (None when undefined)."""
        ...

    def replicates(self, sample: Sample) -> list[float | None]:
        """The statistic over each draw of `sample`."""
        ...

    def units(self, sample: Sample) -> int:
        """How many runs contribute to the statistic at all."""
        ...


@dataclass(frozen=True)
class Ratio:
    """sum(num) / sum(den) over the runs, times `scale`; None when the denominator is zero."""

    num: str
    den: str
    scale: float = 1.0

    def point(self, sample: Sample) -> float | None:
        """The ratio of sums over all runs."""
        den = sum(sample.zeros(self.den))
        return self.scale * sum(sample.zeros(self.num)) / den if den > 0 else None

    def replicates(self, sample: Sample) -> list[float | None]:
        """The ratio of sums over each draw."""
        return [
            self.scale * a / b if b > 0 else None
            for a, b in zip(sample.sums(self.num), sample.sums(self.den), strict=True)
        ]

    def units(self, sample: Sample) -> int:
        """Runs with a non-zero denominator."""
        return sum(1 for d in sample.zeros(self.den) if d > 0)


@dataclass(frozen=True)
class Mean:
    """Mean of the defined per-run values."""

    name: str

    def point(self, sample: Sample) -> float | None:
        """The mean over all runs with a value."""
        count = sum(sample.defined(self.name))
        return sum(sample.zeros(self.name)) / count if count else None

    def replicates(self, sample: Sample) -> list[float | None]:
        """The mean over each draw."""
        return [
            a / b if b else None
            for a, b in zip(
                sample.sums(self.name), sample.sums(self.name, defined=True), strict=True
            )
        ]

    def units(self, sample: Sample) -> int:
        """Runs with a value."""
        return int(sum(sample.defined(self.name)))


@dataclass(frozen=True)
class Quantile:
    """The q-quantile (linear interpolation, like DuckDB's quantile_cont) of per-run values."""

    name: str
    q: float

    def point(self, sample: Sample) -> float | None:
        """The quantile over all runs with a value."""
        return quantile([v for v in sample.columns[self.name] if v is not None], self.q)

    def replicates(self, sample: Sample) -> list[float | None]:
        """The quantile over each draw: runs without a value sort last and are cut off."""
        padded = [math.inf if v is None else v for v in sample.columns[self.name]]
        counts = sample.sums(self.name, defined=True)
        out: list[float | None] = []
        for gather, count in zip(sample.gathers(), counts, strict=True):
            k = int(count)
            out.append(_pick(sorted(gather(padded))[:k], self.q) if k else None)
        return out

    def units(self, sample: Sample) -> int:
        """Runs with a value."""
        return int(sum(sample.defined(self.name)))


@dataclass(frozen=True)
class F1:
    """2·TP / (2·TP + FP + FN) from per-run (possibly fractional) counts."""

    tp: str = "tp"
    fp: str = "fp"
    fn: str = "fn"

    def point(self, sample: Sample) -> float | None:
        """F1 of the counts summed over all runs; None when there is nothing to score."""
        tp, fp, fn = (sum(sample.zeros(c)) for c in (self.tp, self.fp, self.fn))
        return _f1(tp, fp, fn)

    def replicates(self, sample: Sample) -> list[float | None]:
        """F1 of the summed counts of each draw."""
        return [
            _f1(tp, fp, fn)
            for tp, fp, fn in zip(
                sample.sums(self.tp), sample.sums(self.fp), sample.sums(self.fn), strict=True
            )
        ]

    def units(self, sample: Sample) -> int:
        """Runs that contribute any count."""
        columns = (sample.zeros(self.tp), sample.zeros(self.fp), sample.zeros(self.fn))
        return sum(1 for t, p, n in zip(*columns, strict=True) if t + p + n > 0)


def _f1(tp: float, fp: float, fn: float) -> float | None:
    den = 2 * tp + fp + fn
    return 2 * tp / den if den > 0 else None


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile of `values` by linear interpolation; None for no values."""
    return _pick(sorted(values), q) if values else None


def _pick(ordered: Sequence[float], q: float) -> float:
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def resample_indices(strata: Sequence[str], resamples: int, seed: str) -> list[list[int]]:
    """`resamples` bootstrap draws of run indices, each stratum (task) resampled to its own
    size with replacement. Seeded by a string, so a group gets the same draws on every call."""
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for i, stratum in enumerate(strata):
        groups.setdefault(stratum, []).append(i)
    members = list(groups.values())
    draws = []
    for _ in range(resamples):
        draw: list[int] = []
        for group in members:
            draw.extend(rng.choices(group, k=len(group)))
        draws.append(draw)
    return draws


@dataclass(frozen=True)
class Bootstrapped:
    """A statistic on all runs, its percentile interval, and the resampled values behind it."""

    value: float | None
    lo: float | None
    hi: float | None
    units: int
    replicates: tuple[float | None, ...]


def bootstrap(stat: Statistic, sample: Sample) -> Bootstrapped:
    """The statistic over all runs of `sample`, with an interval: Wilson's for a share of
    runs (`run_proportion`), else the percentile interval over its draws."""
    value = stat.point(sample)
    units = stat.units(sample)
    replicates = tuple(stat.replicates(sample))
    counted = run_proportion(stat, sample)
    lo: float | None
    hi: float | None
    if counted is not None:
        lo, hi = wilson_interval(*counted)
        if isinstance(stat, Ratio):
            lo, hi = lo * stat.scale, hi * stat.scale
    elif units >= MIN_RUNS_FOR_INTERVAL:
        lo, hi = _interval(replicates)
    else:
        lo = hi = None
    if value is None:
        lo = hi = None
    return Bootstrapped(value=value, lo=lo, hi=hi, units=units, replicates=replicates)


def run_proportion(stat: Statistic, sample: Sample) -> tuple[int, int] | None:
    """(runs counted in the numerator, runs in the denominator) when `stat` is a share of
    runs (a ratio whose per-run values are each 0 or 1, such as task success); else None.
    Such a rate is a binomial proportion: from a few runs, a percentile bootstrap collapses
    to a point (5 of 5 gives 100% to 100%), where Wilson's interval stays honest."""
    if not isinstance(stat, Ratio):
        return None
    num, den = sample.zeros(stat.num), sample.zeros(stat.den)
    if not all(
        d in (0.0, 1.0) and n in (0.0, 1.0) and n <= d for n, d in zip(num, den, strict=True)
    ):
        return None
    runs = int(sum(den))
    return (int(sum(num)), runs) if runs else None


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """Wilson's score interval of a proportion at `CONFIDENCE`."""
    z = _Z
    p = successes / trials
    denominator = 1 + z * z / trials
    center = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def difference_interval(
    a: Sequence[float | None], b: Sequence[float | None]
) -> tuple[float, float] | None:
    """Interval of (a − b) from two groups' replicates. The groups were resampled
    independently, so pairing replicate i of one with replicate i of the other is a bootstrap
    of the difference. None when too few resamples define both."""
    diffs = tuple(x - y for x, y in zip(a, b, strict=True) if x is not None and y is not None)
    if len(diffs) < MIN_DEFINED_SHARE * max(len(a), 1):
        return None
    lo, hi = _interval(diffs)
    return None if lo is None or hi is None else (lo, hi)


def _interval(replicates: Sequence[float | None]) -> tuple[float | None, float | None]:
    defined = [r for r in replicates if r is not None]
    if not defined or len(defined) < MIN_DEFINED_SHARE * len(replicates):
        return None, None
    defined.sort()
    tail = (1 - CONFIDENCE) / 2
    return _pick(defined, tail), _pick(defined, 1 - tail)

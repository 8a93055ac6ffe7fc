"""Bootstrap intervals with runs as the unit of resampling.

Steps within a run are correlated (one bad template breaks every later step of the run), so
resampling steps would make intervals far too narrow. Every statistic here is a function of a
set of runs: a resample draws runs with replacement (within each task, so the task mix stays
the one that was recorded) and recomputes the statistic. Ratios such as schema_accuracy are
recomputed as ratios of sums over the resampled runs, never averaged per run.

The resampling is vectorised with numpy (imported only on the compare path): at 53k runs a
thousand resamples are 53M draws, which pure Python took a minute over. The draws are the
ones `random.Random(seed).choices` made before: numpy's legacy MT19937 generator is started
from the state Python's seeds, and its doubles are Python's (the same two 32-bit words per
double), so a seed gives the same draws, replicates and intervals as before, number for
number. Sums over a draw are exact whatever the order for integer-valued columns (counts,
tokens), so those come from one matrix product of the draw counts; the other columns are
summed left to right, as Python's `sum` did.
"""

from __future__ import annotations

import itertools
import math
import operator
import random
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from analyzer.compare.numeric import np, npt

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

_BLOCK_DRAWS = 1 << 19
"""Run draws handled at once: a block of resamples of about this many picks bounds memory
(a few arrays of 4 MiB) however large the group is."""

_EXACT_LIMIT = float(2**53)
"""Integer-valued sums below this are exact in float64 in any order of addition."""

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Needs = tuple[list[tuple[str, bool]], list[tuple[str, float]]]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Column:
    """One per-run column as arrays: each run's value, 0 where it has none (`zeros`), and
    whether it has one (`present`). A tenth of the memory of a list of floats and Nones, and
    quick to send to another process; `Sample` reads it as it reads such a list."""

    zeros: Floats
    present: Bools

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Column:
        """The arrays of a list (None: the run has no value)."""
        present = np.fromiter(
            map(operator.is_not, values, itertools.repeat(None)), dtype=np.bool_, count=len(values)
        )
        zeros = np.array(values, dtype=np.float64)  # None reads as NaN here
        zeros[~present] = 0.0
        zeros[zeros == 0.0] = 0.0  # as `v or 0.0` does, -0.0 too
        return cls(zeros, present)


class Draws:
    """The bootstrap draws of one sample, generated block by block from a seeded stream.

    Draw r picks, for each stratum in order of first appearance, as many of its runs as it
    has, uniformly with replacement: exactly `random.Random(seed).choices(stratum, k=size)`
    per stratum and draw, as `resample_indices` did."""

    def __init__(self, strata: Sequence[str], resamples: int, seed: str) -> None:
        """`strata`: each run's task; `seed`: any string (hashed as `random.Random` does)."""
        groups: dict[str, list[int]] = {}
        for i, stratum in enumerate(strata):
            groups.setdefault(stratum, []).append(i)
        self.n = len(strata)
        self.resamples = resamples
        self._members = np.fromiter(
            (i for group in groups.values() for i in group), dtype=np.int64, count=self.n
        )
        starts = np.cumsum([0] + [len(g) for g in groups.values()])[:-1]
        sizes = [len(g) for g in groups.values()]
        self._base = np.repeat(starts, sizes).astype(np.int64)
        self._size = np.repeat(np.array(sizes, dtype=np.float64), sizes)
        self._state = random.Random(seed).getstate()[1]
        # Runs come sorted by task: the strata are then consecutive and each draw's
        # position already is the run's index (no gather through `_members`).
        self._in_order = bool(np.array_equal(self._members, np.arange(self.n)))

    def blocks(self) -> Iterator[Ints]:
        """(resamples in the block × runs) index matrices, in draw order."""
        generator = np.random.RandomState(0)  # seeded only to skip reading OS entropy
        generator.set_state(
            ("MT19937", np.array(self._state[:624], dtype=np.uint32), self._state[624], 0, 0.0)
        )
        per_block = max(1, _BLOCK_DRAWS // max(self.n, 1))
        for start in range(0, self.resamples, per_block):
            rows = min(per_block, self.resamples - start)
            if self.n == 0:
                yield np.zeros((rows, 0), dtype=np.int64)
                continue
            uniform = generator.random_sample(rows * self.n).reshape(rows, self.n)
            # choices(): population[floor(random() * n)], n as a float (in place: these
            # are the largest arrays of a comparison); the products are non-negative, so
            # truncating to an integer is the floor.
            np.multiply(uniform, self._size, out=uniform)
            picks = uniform.astype(np.int64)
            picks += self._base
            yield picks if self._in_order else self._members[picks]

    def lists(self) -> list[list[int]]:
        """Every draw as a list of run indices (for inspection; the statistics never need it)."""
        return [draw for block in self.blocks() for draw in block.tolist()]


def _counts(block: Ints, n: int) -> Ints:
    """How often each run is picked in each draw of `block` (draws × runs)."""
    rows = block.shape[0]
    offsets = (np.arange(rows, dtype=np.int64) * n)[:, None]
    flat = np.bincount((block + offsets).ravel(), minlength=rows * n)
    counts: Ints = flat.reshape(rows, n)
    return counts


def _exact_in_any_order(column: Floats) -> bool:
    """Whole numbers whose largest possible sum over a draw (the largest, picked every time)
    stays exact: then the order of addition cannot change any sum."""
    if not column.size:
        return True
    whole = bool(np.all(column == np.floor(column)))
    return whole and float(np.abs(column).max()) * column.size < _EXACT_LIMIT


class Sample:
    """One group's per-run columns and its bootstrap draws. Sums over each draw and order
    statistics are computed in passes over the draws, as many columns at once as are known
    to be needed (`prepare`), and shared by every statistic that needs them (most rates
    share a denominator)."""

    def __init__(
        self,
        columns: Mapping[str, Sequence[float | None] | Column],
        strata: Sequence[str],
        resamples: int,
        seed: str,
    ) -> None:
        """`columns`: one value per run (None: the run has none), as a list or a `Column`;
        `strata`: each run's task."""
        self.n = len(strata)
        self.resamples = resamples
        self.columns = columns
        self._draws = Draws(strata, resamples, seed)
        self._zeros: dict[str, Floats] = {}
        self._defined: dict[str, Floats] = {}
        self._sums: dict[tuple[str, bool], Floats] = {}
        self._quantiles: dict[tuple[str, float], Floats] = {}

    @property
    def draws(self) -> list[list[int]]:
        """Every draw's run indices (repeats included)."""
        return self._draws.lists()

    def zeros(self, name: str) -> Floats:
        """The column with missing values as 0 (counts)."""
        if name not in self._zeros:
            column = self.columns[name]
            self._zeros[name] = (
                column.zeros
                if isinstance(column, Column)
                else np.array([v or 0.0 for v in column], dtype=np.float64)
            ).reshape(self.n)
        return self._zeros[name]

    def defined(self, name: str) -> Floats:
        """1 where the run has a value, else 0."""
        if name not in self._defined:
            column = self.columns[name]
            self._defined[name] = (
                column.present.astype(np.float64)
                if isinstance(column, Column)
                else np.array([0.0 if v is None else 1.0 for v in column], dtype=np.float64)
            ).reshape(self.n)
        return self._defined[name]

    def values(self, name: str) -> list[float]:
        """The column's values of the runs that have one, in run order."""
        values: list[float] = self.zeros(name)[self.defined(name) == 1.0].tolist()
        return values

    def total(self, name: str, *, defined: bool = False) -> float:
        """The column's sum over all runs, left to right as Python's `sum` adds."""
        return float(sum((self.defined(name) if defined else self.zeros(name)).tolist()))

    def prepare(self, statistics: Sequence[Statistic]) -> None:
        """Resample once for everything these statistics will ask for."""
        sums: set[tuple[str, bool]] = set()
        quantiles: set[tuple[str, float]] = set()
        for stat in statistics:
            needed_sums, needed_quantiles = stat.needs()
            sums.update(needed_sums)
            quantiles.update(needed_quantiles)
        self._resample(sums - set(self._sums), quantiles - set(self._quantiles))

    def sums(self, name: str, *, defined: bool = False) -> Floats:
        """Per draw, the sum of the column (or of its `defined` indicator)."""
        key = (name, defined)
        if key not in self._sums:
            self._resample({key}, set())
        return self._sums[key]

    def quantile_replicates(self, name: str, q: float) -> Floats:
        """Per draw, the q-quantile of the column's defined values (NaN: none in the draw)."""
        if (name, q) not in self._quantiles:
            self._resample(set(), {(name, q)})
        return self._quantiles[(name, q)]

    def _resample(
        self, sum_keys: Collection[tuple[str, bool]], quantile_keys: Collection[tuple[str, float]]
    ) -> None:
        """One pass over the draws for these sums and order statistics."""
        keys: list[tuple[str, bool]] = []
        for key in sorted(sum_keys):
            vector = self.defined(key[0]) if key[1] else self.zeros(key[0])
            if not vector.any():
                self._sums[key] = np.zeros(self.resamples)  # nothing to add up
            elif bool((vector == 1.0).all()):
                self._sums[key] = np.full(self.resamples, float(self.n))  # every pick counts 1
            else:
                keys.append(key)
        wanted = sorted(quantile_keys)
        if not keys and not wanted:
            return
        vectors = [self.defined(n) if d else self.zeros(n) for n, d in keys]
        exact = [i for i, v in enumerate(vectors) if _exact_in_any_order(v)]
        inexact = [i for i in range(len(keys)) if i not in set(exact)]
        matrix = np.stack([vectors[i] for i in exact], axis=1) if exact else None
        ranked = {name: _Ranked(self.zeros(name), self.defined(name)) for name, _ in wanted}
        parts: list[Floats] = []
        picks: dict[tuple[str, float], list[Floats]] = {key: [] for key in wanted}
        for block in self._draws.blocks():
            out = np.empty((block.shape[0], len(keys)), dtype=np.float64)
            # Picks per run per draw, counted once and shared by the exact sums and every
            # order statistic.
            counts = _counts(block, self.n) if matrix is not None or ranked else None
            if matrix is not None and counts is not None:
                out[:, exact] = counts.astype(np.float64) @ matrix
            # Left to right, as Python's sum over the picked values added them: with the
            # draws as columns (pick × draw), a reduction over the first axis adds row after
            # row, every draw's running sum in step (numpy sums pairwise only along the
            # contiguous axis), so it is the same sequence of roundings, vectorised.
            by_pick = np.ascontiguousarray(block.T) if inexact else block
            for i in inexact:
                out[:, i] = np.add.reduce(np.take(vectors[i], by_pick), axis=0)
            parts.append(out)
            for name, column in ranked.items():
                assert counts is not None
                qs = [q for n, q in wanted if n == name]
                for q, picked in zip(qs, column.pick(counts, qs), strict=True):
                    picks[(name, q)].append(picked)
        sums = np.concatenate(parts) if parts else np.zeros((0, len(keys)))
        for i, key in enumerate(keys):
            self._sums[key] = sums[:, i].copy()
        for wanted_key in wanted:
            self._quantiles[wanted_key] = (
                np.concatenate(picks[wanted_key])
                if picks[wanted_key]
                else np.zeros(0, dtype=np.float64)
            )


_CHUNK = 128
"""Runs per chunk when finding an order statistic: chunk totals locate it, then one chunk's
counts place it (two short scans instead of a running count over every run)."""


class _Ranked:
    """One column's values in ascending order (runs without a value last), for picking
    order statistics out of draws without sorting each draw."""

    def __init__(self, zeros: Floats, defined: Floats) -> None:
        """`zeros`: the values, 0 where a run has none; `defined`: 1 where it has one."""
        padded = np.where(defined == 1.0, zeros, math.inf)
        order = np.argsort(padded, kind="stable")
        n = self.n = padded.size
        self.values = padded[order]
        self.order = order
        self.defined_count = int(np.isfinite(padded).sum())
        self.width = -(-n // _CHUNK) * _CHUNK

    def pick(self, picked: Ints, qs: Sequence[float]) -> list[Floats]:
        """Per draw, each q-quantile of its picked values, interpolated as `_pick` does on
        the sorted picks (NaN: none of the picks has a value). `picked`: how often each run
        is picked in each draw (draws × runs, as `_counts` gives)."""
        rows = picked.shape[0]
        if self.n == 0 or rows == 0:
            return [np.full(rows, np.nan) for _ in qs]
        # The counts in value order: the sorted picks of a draw, run-length encoded.
        counts = np.zeros((rows, self.width), dtype=np.int64)
        counts[:, : self.n] = np.take(picked, self.order, axis=1)
        # Runs without a value sort last: the defined picks are the first ones.
        k = counts[:, : self.defined_count].sum(axis=1)
        has = k > 0
        chunks = counts.reshape(rows, -1, _CHUNK)
        running = np.cumsum(chunks.sum(axis=2), axis=1)
        results = []
        for q in qs:
            out = np.full(rows, np.nan)
            if has.any():
                pos = q * (k - 1).astype(np.float64)
                low = np.floor(pos).astype(np.int64)
                high = np.minimum(low + 1, k - 1)
                v_low = self.values[self._at(chunks, running, np.maximum(low, 0))]
                v_high = self.values[self._at(chunks, running, np.maximum(high, 0))]
                with np.errstate(invalid="ignore"):
                    picked = v_low + (v_high - v_low) * (pos - low)
                out[has] = picked[has]
            results.append(out)
        return results

    def _at(self, chunks: Ints, running: Ints, position: Ints) -> Ints:
        """Per row, the rank of the value at sorted position `position` of that row's picks."""
        rows = chunks.shape[0]
        chunk = np.minimum((running <= position[:, None]).sum(axis=1), chunks.shape[1] - 1)
        row = np.arange(rows)
        before = np.where(chunk > 0, running[row, np.maximum(chunk - 1, 0)], 0)
        inside = np.cumsum(chunks[row, chunk], axis=1) + before[:, None]
        offset = (inside <= position[:, None]).sum(axis=1)
        ranks: Ints = np.minimum(chunk * _CHUNK + offset, self.n - 1).astype(np.int64)
        return ranks


class Statistic(Protocol):
    """A number computed from a group's runs, on all of them and on each bootstrap draw."""

    def point(self, sample: Sample) -> float | None:
        """The statistic over all runs (None when undefined)."""
        ...

    def replicate_array(self, sample: Sample) -> Floats:
        """The statistic over each draw of `sample` (NaN where undefined)."""
        ...

    def units(self, sample: Sample) -> int:
        """How many runs contribute to the statistic at all."""
        ...

    def needs(self) -> Needs:
        """The sums (column, of its defined indicator?) and quantiles (column, q) it reads."""
        ...


def _ratio(num: Floats, den: Floats) -> Floats:
    out = np.full(num.shape, np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def as_list(values: Floats) -> list[float | None]:
    """Replicates as a list, None where undefined."""
    return [None if math.isnan(v) else v for v in values.tolist()]


@dataclass(frozen=True)
class Ratio:
    """sum(num) / sum(den) over the runs, times `scale`; None when the denominator is zero."""

    num: str
    den: str
    scale: float = 1.0

    def point(self, sample: Sample) -> float | None:
        """The ratio of sums over all runs."""
        den = sample.total(self.den)
        return self.scale * sample.total(self.num) / den if den > 0 else None

    def replicate_array(self, sample: Sample) -> Floats:
        """The ratio of sums over each draw."""
        return _ratio(self.scale * sample.sums(self.num), sample.sums(self.den))

    def replicates(self, sample: Sample) -> list[float | None]:
        """The ratio of sums over each draw (None: zero denominator)."""
        return as_list(self.replicate_array(sample))

    def needs(self) -> Needs:
        """The sums of both columns."""
        return [(self.num, False), (self.den, False)], []

    def units(self, sample: Sample) -> int:
        """Runs with a non-zero denominator."""
        return int(np.count_nonzero(sample.zeros(self.den) > 0))


@dataclass(frozen=True)
class Mean:
    """Mean of the defined per-run values."""

    name: str

    def point(self, sample: Sample) -> float | None:
        """The mean over all runs with a value."""
        count = sample.total(self.name, defined=True)
        return sample.total(self.name) / count if count else None

    def replicate_array(self, sample: Sample) -> Floats:
        """The mean over each draw."""
        return _ratio(sample.sums(self.name), sample.sums(self.name, defined=True))

    def replicates(self, sample: Sample) -> list[float | None]:
        """The mean over each draw (None: no run with a value)."""
        return as_list(self.replicate_array(sample))

    def needs(self) -> Needs:
        """The column's sums and how many values each draw has."""
        return [(self.name, False), (self.name, True)], []

    def units(self, sample: Sample) -> int:
        """Runs with a value."""
        return int(np.count_nonzero(sample.defined(self.name)))


@dataclass(frozen=True)
class Quantile:
    """The q-quantile (linear interpolation, like DuckDB's quantile_cont) of per-run values."""

    name: str
    q: float

    def point(self, sample: Sample) -> float | None:
        """The quantile over all runs with a value."""
        return quantile(sample.values(self.name), self.q)

    def replicate_array(self, sample: Sample) -> Floats:
        """The quantile over each draw (runs without a value are left out)."""
        return sample.quantile_replicates(self.name, self.q)

    def replicates(self, sample: Sample) -> list[float | None]:
        """The quantile over each draw (None: no run with a value)."""
        return as_list(self.replicate_array(sample))

    def needs(self) -> Needs:
        """The order statistic itself."""
        return [], [(self.name, self.q)]

    def units(self, sample: Sample) -> int:
        """Runs with a value."""
        return int(np.count_nonzero(sample.defined(self.name)))


@dataclass(frozen=True)
class F1:
    """2·TP / (2·TP + FP + FN) from per-run (possibly fractional) counts."""

    tp: str = "tp"
    fp: str = "fp"
    fn: str = "fn"

    def point(self, sample: Sample) -> float | None:
        """F1 of the counts summed over all runs; None when there is nothing to score."""
        tp, fp, fn = (sample.total(c) for c in (self.tp, self.fp, self.fn))
        den = 2 * tp + fp + fn
        return 2 * tp / den if den > 0 else None

    def replicate_array(self, sample: Sample) -> Floats:
        """F1 of the summed counts of each draw."""
        tp, fp, fn = (sample.sums(c) for c in (self.tp, self.fp, self.fn))
        return _ratio(2 * tp, 2 * tp + fp + fn)

    def replicates(self, sample: Sample) -> list[float | None]:
        """F1 of the summed counts of each draw (None: nothing to score)."""
        return as_list(self.replicate_array(sample))

    def needs(self) -> Needs:
        """The sums of the three counts."""
        return [(self.tp, False), (self.fp, False), (self.fn, False)], []

    def units(self, sample: Sample) -> int:
        """Runs that contribute any count."""
        total = sample.zeros(self.tp) + sample.zeros(self.fp) + sample.zeros(self.fn)
        return int(np.count_nonzero(total > 0))


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
    return Draws(strata, resamples, seed).lists()


@dataclass(frozen=True)
class Bootstrapped:
    """A statistic on all runs, its percentile interval, and the resampled values behind it
    (NaN where a resample leaves the statistic undefined)."""

    value: float | None
    lo: float | None
    hi: float | None
    units: int
    replicates: Floats


def bootstrap(stat: Statistic, sample: Sample) -> Bootstrapped:
    """The statistic over all runs of `sample`, with an interval: Wilson's for a share of
    runs (`run_proportion`), else the percentile interval over its draws."""
    value = stat.point(sample)
    units = stat.units(sample)
    replicates = stat.replicate_array(sample)
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
    binary = ((den == 0.0) | (den == 1.0)) & ((num == 0.0) | (num == 1.0)) & (num <= den)
    if not bool(binary.all()):
        return None
    runs = int(den.sum())
    return (int(num.sum()), runs) if runs else None


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """Wilson's score interval of a proportion at `CONFIDENCE`."""
    z = _Z
    p = successes / trials
    denominator = 1 + z * z / trials
    center = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def _array(values: Sequence[float | None] | Floats) -> Floats:
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False)
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def difference_interval(
    a: Sequence[float | None] | Floats, b: Sequence[float | None] | Floats
) -> tuple[float, float] | None:
    """Interval of (a − b) from two groups' replicates. The groups were resampled
    independently, so pairing replicate i of one with replicate i of the other is a bootstrap
    of the difference. None when too few resamples define both."""
    xa, xb = _array(a), _array(b)
    if xa.shape != xb.shape:
        raise ValueError("replicates of different lengths")
    diffs = (xa - xb)[~(np.isnan(xa) | np.isnan(xb))]
    if diffs.size < MIN_DEFINED_SHARE * max(xa.size, 1):
        return None
    lo, hi = _interval(diffs)
    return None if lo is None or hi is None else (lo, hi)


def _interval(replicates: Floats) -> tuple[float | None, float | None]:
    defined = np.sort(replicates[~np.isnan(replicates)])
    if not defined.size or defined.size < MIN_DEFINED_SHARE * replicates.size:
        return None, None
    tail = (1 - CONFIDENCE) / 2
    return _pick_sorted(defined, tail), _pick_sorted(defined, 1 - tail)


def _pick_sorted(ordered: Floats, q: float) -> float:
    """`_pick` on a sorted array, with the same arithmetic."""
    pos = q * (ordered.size - 1)
    low = math.floor(pos)
    high = min(low + 1, ordered.size - 1)
    a, b = float(ordered[low]), float(ordered[high])
    return a + (b - a) * (pos - low)

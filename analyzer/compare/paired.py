"""Paired comparisons: two groups on the requests both answered, resampling requests.

Two steps answer the same request when their `request_hash` is equal (see `pairing`): the
first step of every run of a task with one seed, every request of a request suite or a
probe. On such requests, a rate defined per request (per response, per call) differs between
two groups only by how they answered, not by what they were asked; resampling the shared
requests (the same draw for both groups) gives the difference's interval without the
between-request spread, which independent run resamples carry twice.

A group that answered a request several times (repeated runs) contributes the sums over its
answers; a request enters a pair's comparison when both groups' answers define the rate
(a non-zero denominator on each side).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import duckdb

from analyzer.compare.metrics import PER_REQUEST, STEP_SUM_COLUMNS
from analyzer.compare.numeric import np
from analyzer.compare.stats import Floats, Ratio, Statistic

MIN_PAIRED_REQUESTS = 5
"""Shared requests a pair needs before a per-request metric is compared paired."""

MIN_PAIRED_SHARE = 0.5
"""Share of each group's denominator (its calls, its responses…) the shared requests must
hold: where only the first step of long runs pairs, comparing that step alone would throw
away most of what was recorded, and the runs are compared instead."""


@dataclass(frozen=True)
class PairedDifference:
    """Group a minus group b on their shared requests, with its bootstrap replicates."""

    value_a: float
    value_b: float
    requests: int
    replicates: Floats
    """(a − b) over each resample of the shared requests (NaN where undefined)."""


class RequestTable:
    """Per group, the step sums of its answers to each request."""

    def __init__(self, rows: list[tuple[object, ...]], totals: dict[str, dict[str, float]]) -> None:
        """`rows`: (group, request hash, *STEP_SUM_COLUMNS) as `PER_REQUEST` gives them;
        `totals`: each group's step sums over all its runs."""
        self._totals = totals
        self._rows: dict[str, dict[str, tuple[float, ...]]] = {}
        for row in rows:
            sums = tuple(float(v) if isinstance(v, int | float) else 0.0 for v in row[2:])
            self._rows.setdefault(str(row[0]), {})[str(row[1])] = sums

    def answered(self, group: str) -> int:
        """Distinct requests the group answered."""
        return len(self._rows.get(group, {}))

    def total(self, group: str, name: str) -> float:
        """One step-sum column of `group` over all its runs."""
        return self._totals.get(group, {}).get(name, 0.0)

    def columns(self, group: str, hashes: list[str], name: str) -> Floats:
        """One step-sum column of `group` for these requests."""
        position = STEP_SUM_COLUMNS.index(name)
        rows = self._rows.get(group, {})
        return np.array([rows[h][position] for h in hashes], dtype=np.float64)

    def shared(self, a: str, b: str) -> list[str]:
        """Requests both groups answered, in a stable order."""
        rows_a, rows_b = self._rows.get(a, {}), self._rows.get(b, {})
        return sorted(rows_a.keys() & rows_b.keys())


def load_request_table(
    conn: duckdb.DuckDBPyConnection, totals: dict[str, dict[str, float]]
) -> RequestTable:
    """The step sums per group of the requests several groups of the selection answered;
    `totals`: each group's step sums over all its runs (what the shared share is of)."""
    return RequestTable(conn.execute(PER_REQUEST).fetchall(), totals)


def per_request(stat: Statistic) -> Ratio | None:
    """The statistic when it is a rate defined per request (a ratio of step sums), else
    None: run-level quantities (success, steps to finish, tokens per run) cannot pair."""
    steps = STEP_SUM_COLUMNS
    if isinstance(stat, Ratio) and stat.scale == 1.0 and stat.num in steps and stat.den in steps:
        return stat
    return None


def _generator(*parts: str) -> np.random.Generator:
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def paired_difference(
    table: RequestTable,
    stat: Ratio,
    a: str,
    b: str,
    resamples: int,
    seed: str,
) -> PairedDifference | None:
    """The rate of `a` minus that of `b` on the requests both answered and both define it,
    with `resamples` paired bootstrap replicates (seeded by `seed`); None with fewer than
    `MIN_PAIRED_REQUESTS` such requests, or when they hold less than `MIN_PAIRED_SHARE` of
    either group's denominator."""
    hashes = table.shared(a, b)
    if len(hashes) < MIN_PAIRED_REQUESTS:
        return None
    num_a, den_a = table.columns(a, hashes, stat.num), table.columns(a, hashes, stat.den)
    num_b, den_b = table.columns(b, hashes, stat.num), table.columns(b, hashes, stat.den)
    both = (den_a > 0) & (den_b > 0)
    m = int(both.sum())
    if m < MIN_PAIRED_REQUESTS:
        return None
    for group, den in ((a, den_a), (b, den_b)):
        if float(den[both].sum()) < MIN_PAIRED_SHARE * table.total(group, stat.den):
            return None
    matrix = np.stack([num_a[both], den_a[both], num_b[both], den_b[both]], axis=1)
    totals = matrix.sum(axis=0)
    draws = _generator(seed, a, b, stat.num, stat.den).integers(0, m, size=(resamples, m))
    offsets = (np.arange(resamples, dtype=np.int64) * m)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=resamples * m)
    sums = counts.reshape(resamples, m).astype(np.float64) @ matrix
    with np.errstate(invalid="ignore", divide="ignore"):
        replicates = sums[:, 0] / sums[:, 1] - sums[:, 2] / sums[:, 3]
    return PairedDifference(
        value_a=float(totals[0] / totals[1]),
        value_b=float(totals[2] / totals[3]),
        requests=m,
        replicates=replicates,
    )

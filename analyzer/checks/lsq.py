"""Least squares over a handful of named coefficients, each with a prior and bounds.

The ledger explains each step's prompt growth as a weighted sum of what the request added,
with a coefficient per part type (how many of those tokens the host counted) and per-message
template overhead. A run of five steps has fewer steps than coefficients, so each coefficient
carries a prior (a value and how far the data may move it cheaply) that decides what the
steps cannot; and bounds, since a host cannot count fewer than none of the tokens sent.

Minimizes `sum_i w_i (y_i - x_i . c)^2 + sum_k ((c_k - prior_k) / spread_k)^2` with
`low_k <= c_k <= high_k`: a strictly convex problem, solved exactly by an active set over
the normal equations. The data enter once, as normal equations built in one pass; every
further fit (a hypothesis with other bounds) costs a few dozen operations, not a pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from operator import mul

_TOLERANCE = 1e-9
_MAX_ROUNDS = 32


@dataclass(frozen=True, slots=True)
class Coefficient:
    """One coefficient of a fit: its prior, how far the data may move it, and its range."""

    name: str
    prior: float
    spread: float
    """Standard deviation of the prior: moving the coefficient by one spread costs as much as
    one step off by one noise unit."""
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Normal:
    """The normal equations of weighted data over named columns: `X'WX`, `X'Wy`, `y'Wy`.

    Built once for every column a model might use; each model solves its own subset."""

    names: tuple[str, ...]
    gram: tuple[tuple[float, ...], ...]
    moment: tuple[float, ...]
    energy: float
    points: int


def normal_equations(
    columns: Mapping[str, Sequence[float]], target: Sequence[float], weights: Sequence[float]
) -> Normal:
    """The normal equations of `target ~ columns` under `weights`, in one pass per pair of
    columns (C loops over the points)."""
    names = tuple(columns)
    values = [columns[name] for name in names]
    weighted = [list(map(mul, column, weights)) for column in values]
    k = len(names)
    gram = [[0.0] * k for _ in range(k)]
    for j in range(k):
        for m in range(j, k):
            gram[j][m] = gram[m][j] = sum(map(mul, weighted[j], values[m]))
    moment = tuple(sum(map(mul, weighted[j], target)) for j in range(k))
    energy = sum(map(mul, map(mul, target, target), weights))
    points = sum(1 for w in weights if w > 0)
    return Normal(names, tuple(map(tuple, gram)), moment, energy, points)


@dataclass(frozen=True, slots=True)
class Solution:
    """A fitted coefficient vector and what it costs."""

    values: dict[str, float]
    objective: float
    """Data misfit plus prior penalty at `values`."""
    misfit: float
    """The data part alone: the weighted sum of squared residuals."""


def solve(normal: Normal, coefficients: Sequence[Coefficient]) -> Solution:
    """The bounded, prior-regularized least-squares fit of `coefficients` (columns of
    `normal`, by name) to `normal`."""
    k = len(coefficients)
    index = {name: j for j, name in enumerate(normal.names)}
    picked = [index[c.name] for c in coefficients]
    a = [[normal.gram[i][j] for j in picked] for i in picked]
    b = [normal.moment[i] for i in picked]
    for j, c in enumerate(coefficients):
        precision = 1.0 / (c.spread * c.spread)
        a[j][j] += precision
        b[j] += precision * c.prior
    x = _active_set(a, b, coefficients)
    quadratic = sum(x[j] * sum(map(mul, a[j], x)) for j in range(k))
    linear = sum(map(mul, b, x))
    penalty = sum(((x[j] - c.prior) / c.spread) ** 2 for j, c in enumerate(coefficients))
    constant = normal.energy + sum((c.prior / c.spread) ** 2 for c in coefficients)
    objective = max(0.0, quadratic - 2.0 * linear + constant)
    return Solution(
        values={c.name: x[j] for j, c in enumerate(coefficients)},
        objective=objective,
        misfit=max(0.0, objective - penalty),
    )


def bounded(
    coefficients: Sequence[Coefficient], limits: Mapping[str, tuple[float, float]]
) -> list[Coefficient]:
    """`coefficients` with the bounds of some replaced: a hypothesis to test against."""
    return [
        replace(c, low=limits[c.name][0], high=limits[c.name][1]) if c.name in limits else c
        for c in coefficients
    ]


def _active_set(a: list[list[float]], b: list[float], cs: Sequence[Coefficient]) -> list[float]:
    """Minimize `x'Ax - 2b'x` within the bounds by a primal active set: from a feasible
    point, move toward the optimum of the free coefficients as far as the bounds allow,
    pinning the one that stops the move; at an optimum of the free ones, release the pinned
    coefficient whose gradient points furthest inside. Strictly convex: it cannot cycle."""
    k = len(cs)
    x = [min(max(c.prior, c.low), c.high) for c in cs]
    pinned = {j: c.low for j, c in enumerate(cs) if c.high - c.low <= _TOLERANCE}
    for _ in range(_MAX_ROUNDS * max(1, k)):
        free = [j for j in range(k) if j not in pinned]
        target = _solve_free(a, b, free, pinned)
        step, blocking, bound = 1.0, -1, 0.0
        for j, value in zip(free, target, strict=True):
            if value < cs[j].low - _TOLERANCE and x[j] - value > 0:
                reach = (x[j] - cs[j].low) / (x[j] - value)
                if reach < step:
                    step, blocking, bound = reach, j, cs[j].low
            elif value > cs[j].high + _TOLERANCE and value - x[j] > 0:
                reach = (cs[j].high - x[j]) / (value - x[j])
                if reach < step:
                    step, blocking, bound = reach, j, cs[j].high
        for j, value in zip(free, target, strict=True):
            x[j] += step * (value - x[j])
        if blocking >= 0:
            x[blocking] = bound
            pinned[blocking] = bound
            continue
        release, worst = -1, _TOLERANCE
        for j, value in pinned.items():
            if cs[j].high - cs[j].low <= _TOLERANCE:
                continue  # held at one value: nowhere to go
            gradient = sum(map(mul, a[j], x)) - b[j]
            inward = -gradient if value == cs[j].low else gradient
            if inward > worst:
                release, worst = j, inward
        if release < 0:
            return [min(max(v, c.low), c.high) for v, c in zip(x, cs, strict=True)]
        del pinned[release]
    return _coordinate_descent(a, b, cs, x)


def _solve_free(
    a: list[list[float]], b: list[float], free: list[int], pinned: dict[int, float]
) -> list[float]:
    """Solve the free coefficients' equations with the pinned ones held at their values."""
    n = len(free)
    rows = []
    for i in free:
        row = a[i]
        rhs = b[i]
        for j, value in pinned.items():
            rhs -= row[j] * value
        rows.append([*(row[j] for j in free), rhs])
    # Gaussian elimination on the augmented rows; the matrix is symmetric positive definite
    # (every coefficient has a prior), so no pivoting is needed.
    for p in range(n):
        top = rows[p]
        pivot = top[p]
        for r in range(p + 1, n):
            row = rows[r]
            factor = row[p] / pivot
            if factor:
                for c in range(p + 1, n + 1):
                    row[c] -= factor * top[c]
    out = [0.0] * n
    for p in range(n - 1, -1, -1):
        row = rows[p]
        total = row[n]
        for c in range(p + 1, n):
            total -= row[c] * out[c]
        out[p] = total / row[p]
    return out


def _coordinate_descent(
    a: list[list[float]], b: list[float], cs: Sequence[Coefficient], x: list[float]
) -> list[float]:
    """The fallback should the active set cycle: projected coordinate descent, which always
    converges on a strictly convex problem."""
    x = [min(max(v, c.low), c.high) for v, c in zip(x, cs, strict=True)]
    for _ in range(2000):
        moved = 0.0
        for j, c in enumerate(cs):
            rest = sum(map(mul, a[j], x)) - a[j][j] * x[j]
            value = min(max((b[j] - rest) / a[j][j], c.low), c.high)
            moved = max(moved, abs(value - x[j]))
            x[j] = value
        if moved < _TOLERANCE:
            break
    return x


def chi2_survival(statistic: float, dof: int) -> float:
    """P(X >= statistic) for a chi-squared variable with 1 or 2 degrees of freedom: how
    likely a difference in misfit this large is when the simpler hypothesis holds."""
    if statistic <= 0:
        return 1.0
    if dof == 1:
        return math.erfc(math.sqrt(statistic / 2.0))
    return math.exp(-statistic / 2.0)

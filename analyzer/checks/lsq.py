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

A model tried under many bounds (`Quadratic`) is solved in the few coefficients whose bounds
change: the others are profiled out once (their best values given those few, a Schur
complement), so each hypothesis is a box problem of two or three unknowns. Whenever a
profiled coefficient would leave its own bounds the whole problem is solved instead, so the
answer is always the exact optimum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from operator import mul, sub

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


def extend_normal(
    normal: Normal,
    columns: Mapping[str, Sequence[float]],
    added: Mapping[str, Sequence[float]],
    target: Sequence[float],
    weights: Sequence[float],
) -> Normal:
    """`normal` (of `columns`, under the same `target` and `weights`) with the columns
    `added` joined: only their products with the rest are computed, not the whole Gram."""
    old = [columns[name] for name in normal.names]
    new = list(added.values())
    weighted = [list(map(mul, column, weights)) for column in new]
    k, extra = len(old), len(new)
    gram = [[*row, *([0.0] * extra)] for row in normal.gram]
    gram += [[0.0] * (k + extra) for _ in range(extra)]
    for j, column in enumerate(weighted):
        row = k + j
        for m in range(k):
            gram[row][m] = gram[m][row] = sum(map(mul, column, old[m]))
        for m in range(j, extra):
            gram[row][k + m] = gram[k + m][row] = sum(map(mul, column, new[m]))
    moment = (*normal.moment, *(sum(map(mul, column, target)) for column in weighted))
    return Normal(
        (*normal.names, *added), tuple(map(tuple, gram)), moment, normal.energy, normal.points
    )


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
    return Quadratic(normal, coefficients).solve()


def bounded(
    coefficients: Sequence[Coefficient], limits: Mapping[str, tuple[float, float]]
) -> list[Coefficient]:
    """`coefficients` with the bounds of some replaced: a hypothesis to test against."""
    return [
        replace(c, low=limits[c.name][0], high=limits[c.name][1]) if c.name in limits else c
        for c in coefficients
    ]


class _Profile:
    """The coefficients `held` (whose bounds a hypothesis sets) with the `rest` profiled out:
    the rest's best values move by `slopes . d` when the held ones move by `d` from the
    unconstrained optimum, and the objective grows by `d' schur d`."""

    __slots__ = ("_inverses", "held", "rest", "schur", "slopes")

    def __init__(self, inverse: list[list[float]], held: tuple[int, ...]) -> None:
        # From the inverse H of A, for any partition: the profiled objective's matrix is the
        # inverse of H's held block, and the rest move by H_rh times that per unit of shift.
        block = [[inverse[h][g] for g in held] for h in held]
        schur = _invert(block)
        self.held = held
        self.rest = tuple(j for j in range(len(inverse)) if j not in held)
        self.schur = schur
        columns = list(zip(*schur, strict=True))
        self.slopes = [
            [sum(map(mul, [inverse[j][h] for h in held], column)) for column in columns]
            for j in self.rest
        ]
        # Inverses of the schur's principal blocks, by the positions they keep free; all of
        # them free, it is H's own block.
        self._inverses: dict[tuple[int, ...], list[list[float]]] = {tuple(range(len(held))): block}

    def box(self, center: list[float], low: list[float], high: list[float]) -> list[float]:
        """Minimize `(x - center)' schur (x - center)` within the bounds, by a primal active
        set: from a feasible point, move toward the optimum of the free coordinates as far as
        the bounds allow, pinning the one that stops the move; at an optimum of the free
        ones, release the pinned one whose gradient points furthest inside."""
        n = len(center)
        x = [min(max(v, lo), hi) for v, lo, hi in zip(center, low, high, strict=True)]
        if n == 1 or x == center:
            return x  # one coordinate: its optimum within bounds is the clipped center
        q = self.schur
        # Those the clipping moved start on their bound: the optimum mostly keeps them there
        # (a hypothesis holds a share away from where the steps put it), which saves the
        # rounds that would pin them one by one. Any feasible start reaches the one optimum.
        pinned = {i: x[i] for i in range(n) if x[i] != center[i] or high[i] - low[i] <= _TOLERANCE}
        for _ in range(_MAX_ROUNDS * n):
            free = tuple(i for i in range(n) if i not in pinned)
            if free:
                # The free coordinates' optimum with the pinned ones where they are.
                inverse = self._inverses.get(free)
                if inverse is None:
                    inverse = self._inverses[free] = _invert(
                        [[q[i][j] for j in free] for i in free]
                    )
                moved = [(j, x[j] - center[j]) for j in pinned]
                pull = [sum(q[i][j] * d for j, d in moved) for i in free]
                target = [
                    center[i] - sum(map(mul, row, pull))
                    for i, row in zip(free, inverse, strict=True)
                ]
            else:
                target = []
            step, blocking, bound = 1.0, -1, 0.0
            for i, value in zip(free, target, strict=True):
                if value < low[i] - _TOLERANCE and x[i] - value > 0:
                    reach = (x[i] - low[i]) / (x[i] - value)
                    if reach < step:
                        step, blocking, bound = reach, i, low[i]
                elif value > high[i] + _TOLERANCE and value - x[i] > 0:
                    reach = (high[i] - x[i]) / (value - x[i])
                    if reach < step:
                        step, blocking, bound = reach, i, high[i]
            for i, value in zip(free, target, strict=True):
                x[i] += step * (value - x[i])
            if blocking >= 0:
                x[blocking] = bound
                pinned[blocking] = bound
                continue
            shift = [v - c for v, c in zip(x, center, strict=True)]
            release, worst = -1, _TOLERANCE
            for i, value in pinned.items():
                if high[i] - low[i] <= _TOLERANCE:
                    continue  # held at one value: nowhere to go
                gradient = sum(map(mul, q[i], shift))
                inward = -gradient if value == low[i] else gradient
                if inward > worst:
                    release, worst = i, inward
            if release < 0:
                return [min(max(v, lo), hi) for v, lo, hi in zip(x, low, high, strict=True)]
            del pinned[release]
        pulled = [sum(map(mul, row, center)) for row in q]
        return _coordinate_descent(q, pulled, low, high, x)


class Quadratic:
    """One model's objective over one set of normal equations, `x'Ax - 2b'x + c`: built once,
    then solved under the bounds of as many hypotheses as are tried (`solve(limits)`).

    Everything comes from one inversion of A: the unconstrained optimum, and for each set of
    coefficients a hypothesis bounds, the rest profiled out. A model with some coefficients
    dropped (`without`) or some added (`bordered`) gets its inverse by a low-rank update."""

    __slots__ = (
        "_a",
        "_b",
        "_center",
        "_coefficients",
        "_constant",
        "_floor",
        "_highs",
        "_inverse",
        "_inverse_spreads",
        "_lows",
        "_priors",
        "_profiles",
        "names",
    )

    def __init__(self, normal: Normal, coefficients: Sequence[Coefficient]) -> None:
        index = {name: j for j, name in enumerate(normal.names)}
        picked = [index[c.name] for c in coefficients]
        a = [[normal.gram[i][j] for j in picked] for i in picked]
        b = [normal.moment[i] for i in picked]
        for j, c in enumerate(coefficients):
            precision = 1.0 / (c.spread * c.spread)
            a[j][j] += precision
            b[j] += precision * c.prior
        constant = normal.energy + sum((c.prior / c.spread) ** 2 for c in coefficients)
        self._set(tuple(coefficients), a, b, constant, None)

    def _set(
        self,
        coefficients: tuple[Coefficient, ...],
        a: list[list[float]],
        b: list[float],
        constant: float,
        inverse: list[list[float]] | None,
    ) -> None:
        self._coefficients = coefficients
        self.names = tuple(c.name for c in coefficients)
        self._a, self._b, self._constant = a, b, constant
        self._lows = [c.low for c in coefficients]
        self._highs = [c.high for c in coefficients]
        self._priors = [c.prior for c in coefficients]
        self._inverse_spreads = [1.0 / c.spread for c in coefficients]
        self._inverse = inverse
        self._center: list[float] | None = None
        self._floor = 0.0
        self._profiles: dict[tuple[int, ...], _Profile] = {}

    def _inverted(self) -> list[list[float]]:
        if self._inverse is None:
            self._inverse = _invert(self._a)
        return self._inverse

    def without(self, names: Sequence[str]) -> Quadratic:
        """The model without the coefficients `names` (those it has): the same objective
        with them held at zero, less their priors' constant."""
        cs = self._coefficients
        drop = [j for j, c in enumerate(cs) if c.name in names]
        if not drop:
            return self
        keep = [j for j in range(len(cs)) if j not in drop]
        h = self._inverted()
        # The inverse of a principal block of A from A's inverse H (a Schur complement of H).
        cross = [[h[k][d] for d in drop] for k in keep]
        pull = _invert([[h[d][e] for e in drop] for d in drop])
        weighted = [[sum(map(mul, row, column)) for column in pull] for row in cross]
        inverse = [
            [h[k][m] - sum(map(mul, weighted[i], cross[n])) for n, m in enumerate(keep)]
            for i, k in enumerate(keep)
        ]
        dropped = sum((cs[d].prior / cs[d].spread) ** 2 for d in drop)
        out = Quadratic.__new__(Quadratic)
        out._set(
            tuple(cs[k] for k in keep),
            [[self._a[k][m] for m in keep] for k in keep],
            [self._b[k] for k in keep],
            self._constant - dropped,
            inverse,
        )
        return out

    def bordered(self, normal: Normal, added: Sequence[Coefficient]) -> Quadratic:
        """The model with the coefficients `added`, whose columns `normal` holds beside this
        model's own (as `extend_normal` gives them)."""
        if not added:
            return self
        index = {name: j for j, name in enumerate(normal.names)}
        old = [index[n] for n in self.names]
        new = [index[c.name] for c in added]
        gram, k = normal.gram, len(old)
        border = [[gram[i][j] for j in new] for i in old]
        corner = [[gram[i][j] for j in new] for i in new]
        extra = [normal.moment[i] for i in new]
        for p, c in enumerate(added):
            precision = 1.0 / (c.spread * c.spread)
            corner[p][p] += precision
            extra[p] += precision * c.prior
        h = self._inverted()
        columns = list(zip(*border, strict=True))
        # H B, the new coefficients' Schur complement S = C - B'HB, and the bordered inverse
        # [[H + HB S^-1 B'H, -HB S^-1], [-S^-1 B'H, S^-1]].
        hb = [[sum(map(mul, row, column)) for column in columns] for row in h]
        schur = [
            [corner[p][q] - sum(map(mul, columns[p], [r[q] for r in hb])) for q in range(len(new))]
            for p in range(len(new))
        ]
        pull = _invert(schur)
        hbs = [[sum(map(mul, row, column)) for column in pull] for row in hb]
        inverse = [
            [*(h[r][s] + sum(map(mul, hbs[r], hb[s])) for s in range(k)), *(-v for v in hbs[r])]
            for r in range(k)
        ]
        inverse += [[*(-hbs[r][p] for r in range(k)), *pull[p]] for p in range(len(new))]
        a = [[*row, *border[r]] for r, row in enumerate(self._a)]
        a += [[*(border[r][p] for r in range(k)), *corner[p]] for p in range(len(new))]
        out = Quadratic.__new__(Quadratic)
        out._set(
            (*self._coefficients, *added),
            a,
            [*self._b, *extra],
            self._constant + sum((c.prior / c.spread) ** 2 for c in added),
            inverse,
        )
        return out

    def _centered(self) -> list[float]:
        center = self._center
        if center is None:
            inverse = self._inverted()
            center = self._center = [sum(map(mul, row, self._b)) for row in inverse]
            self._floor = self._constant - sum(map(mul, self._b, center))
        return center

    def solve(self, limits: Mapping[str, tuple[float, float]] | None = None) -> Solution:
        """The fit with the bounds of the coefficients named in `limits` replaced (names the
        model lacks are ignored)."""
        cs = self._coefficients
        lows, highs = self._lows, self._highs
        held: set[int] = set()
        if limits:
            lows, highs = list(lows), list(highs)
            for j, c in enumerate(cs):
                limit = limits.get(c.name)
                if limit is not None:
                    lows[j], highs[j] = limit
                    held.add(j)
        center = self._centered()
        # Solved in the held coefficients and those the unconstrained optimum puts out of
        # bounds, the rest profiled out; should one of the rest then leave its bounds, it
        # joins them (at worst, every coefficient: the whole problem).
        for j, value in enumerate(center):
            if value < lows[j] or value > highs[j]:
                held.add(j)
        while True:
            x = list(center)
            objective = self._floor
            outside = []
            if held:
                key = tuple(sorted(held))
                profile = self._profiles.get(key)
                if profile is None:
                    profile = self._profiles[key] = _Profile(self._inverted(), key)
                u = [center[j] for j in key]
                inner = profile.box(u, [lows[j] for j in key], [highs[j] for j in key])
                shift = list(map(sub, inner, u))
                for j, value in zip(key, inner, strict=True):
                    x[j] = value
                for j, slopes in zip(profile.rest, profile.slopes, strict=True):
                    value = center[j] + sum(map(mul, slopes, shift))
                    if value < lows[j] - _TOLERANCE or value > highs[j] + _TOLERANCE:
                        outside.append(j)
                    # Within the tolerance of a bound: on it.
                    x[j] = min(max(value, lows[j]), highs[j])
                objective += sum(
                    map(mul, shift, [sum(map(mul, row, shift)) for row in profile.schur])
                )
            if not outside:
                break
            held.update(outside)
        off = list(map(mul, map(sub, x, self._priors), self._inverse_spreads))
        objective = max(0.0, objective)
        return Solution(
            values=dict(zip(self.names, x, strict=True)),
            objective=objective,
            misfit=max(0.0, objective - sum(map(mul, off, off))),
        )


def _active_set(
    a: list[list[float]],
    b: list[float],
    lows: Sequence[float],
    highs: Sequence[float],
    start: list[float],
) -> list[float]:
    """Minimize `x'Ax - 2b'x` within the bounds by a primal active set: from a feasible
    point, move toward the optimum of the free coefficients as far as the bounds allow,
    pinning the one that stops the move; at an optimum of the free ones, release the pinned
    coefficient whose gradient points furthest inside. Strictly convex: it cannot cycle."""
    k = len(b)
    x = list(start)
    pinned = {j: lows[j] for j in range(k) if highs[j] - lows[j] <= _TOLERANCE}
    for _ in range(_MAX_ROUNDS * max(1, k)):
        free = [j for j in range(k) if j not in pinned]
        target = _solve_free(a, b, free, pinned)
        step, blocking, bound = 1.0, -1, 0.0
        for j, value in zip(free, target, strict=True):
            if value < lows[j] - _TOLERANCE and x[j] - value > 0:
                reach = (x[j] - lows[j]) / (x[j] - value)
                if reach < step:
                    step, blocking, bound = reach, j, lows[j]
            elif value > highs[j] + _TOLERANCE and value - x[j] > 0:
                reach = (highs[j] - x[j]) / (value - x[j])
                if reach < step:
                    step, blocking, bound = reach, j, highs[j]
        for j, value in zip(free, target, strict=True):
            x[j] += step * (value - x[j])
        if blocking >= 0:
            x[blocking] = bound
            pinned[blocking] = bound
            continue
        release, worst = -1, _TOLERANCE
        for j, value in pinned.items():
            if highs[j] - lows[j] <= _TOLERANCE:
                continue  # held at one value: nowhere to go
            gradient = sum(map(mul, a[j], x)) - b[j]
            inward = -gradient if value == lows[j] else gradient
            if inward > worst:
                release, worst = j, inward
        if release < 0:
            return [min(max(v, lo), hi) for v, lo, hi in zip(x, lows, highs, strict=True)]
        del pinned[release]
    return _coordinate_descent(a, b, lows, highs, x)


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
        picked = [row[j] for j in free]
        picked.append(rhs)
        rows.append(picked)
    # Gaussian elimination on the augmented rows; the matrix is symmetric positive definite
    # (every coefficient has a prior), so no pivoting is needed. Each row update is one
    # comprehension: these systems are tiny and solved thousands of times a second.
    for p in range(n):
        top = rows[p]
        pivot = top[p]
        tail = top[p + 1 :]
        for r in range(p + 1, n):
            row = rows[r]
            factor = row[p] / pivot
            if factor:
                row[p + 1 :] = [v - factor * t for v, t in zip(row[p + 1 :], tail, strict=True)]
    out = [0.0] * n
    for p in range(n - 1, -1, -1):
        row = rows[p]
        total = row[n]
        for c in range(p + 1, n):
            total -= row[c] * out[c]
        out[p] = total / row[p]
    return out


def _invert(a: list[list[float]]) -> list[list[float]]:
    """The inverse of the symmetric positive definite `a`, by Gauss-Jordan elimination (in
    closed form for one or two rows, the most frequent)."""
    n = len(a)
    if n == 1:
        return [[1.0 / a[0][0]]]
    if n == 2:
        (p, q), (r, t) = a
        det = p * t - q * r
        return [[t / det, -q / det], [-r / det, p / det]]
    rows = [[*row, *(float(i == j) for j in range(n))] for i, row in enumerate(a)]
    for p in range(n):
        # Columns up to p are read no more (each later pivot reads its own column onward):
        # only those after it are updated, the same operations on what is returned.
        top = rows[p]
        pivot = top[p]
        tail = top[p + 1 :] = [v / pivot for v in top[p + 1 :]]
        for r in range(n):
            if r == p:
                continue
            row = rows[r]
            factor = row[p]
            if factor:
                row[p + 1 :] = [v - factor * t for v, t in zip(row[p + 1 :], tail, strict=True)]
    return [row[n:] for row in rows]


def _coordinate_descent(
    a: list[list[float]],
    b: list[float],
    lows: Sequence[float],
    highs: Sequence[float],
    x: list[float],
) -> list[float]:
    """The fallback should the active set cycle: projected coordinate descent, which always
    converges on a strictly convex problem."""
    x = [min(max(v, lo), hi) for v, lo, hi in zip(x, lows, highs, strict=True)]
    for _ in range(2000):
        moved = 0.0
        for j in range(len(b)):
            rest = sum(map(mul, a[j], x)) - a[j][j] * x[j]
            value = min(max((b[j] - rest) / a[j][j], lows[j]), highs[j])
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

"""The ledger's bounded least squares against a plain reference: projected coordinate descent
on the same objective, on random problems shaped like a run's (a few coefficients, some of
them held in boxes or at points by a hypothesis, others pushed out of their bounds by the
data)."""

from __future__ import annotations

import random

import pytest

from analyzer.checks.lsq import Coefficient, Quadratic, bounded, normal_equations


def _reference(
    columns: dict[str, list[float]],
    target: list[float],
    coefficients: list[Coefficient],
) -> tuple[dict[str, float], float]:
    """Minimize `sum (y - Xc)^2 + sum ((c - prior) / spread)^2` within the bounds, one
    coordinate at a time until nothing moves (slow, and obviously right)."""
    names = [c.name for c in coefficients]
    values = {c.name: min(max(c.prior, c.low), c.high) for c in coefficients}

    def residuals() -> list[float]:
        return [y - sum(values[n] * columns[n][i] for n in names) for i, y in enumerate(target)]

    for _ in range(20_000):
        moved = 0.0
        for c in coefficients:
            column = columns[c.name]
            rest = [r + values[c.name] * x for r, x in zip(residuals(), column, strict=True)]
            precision = 1.0 / c.spread**2
            best = (sum(x * r for x, r in zip(column, rest, strict=True)) + precision * c.prior) / (
                sum(x * x for x in column) + precision
            )
            best = min(max(best, c.low), c.high)
            moved = max(moved, abs(best - values[c.name]))
            values[c.name] = best
        if moved < 1e-12:
            break
    objective = sum(r * r for r in residuals()) + sum(
        ((values[c.name] - c.prior) / c.spread) ** 2 for c in coefficients
    )
    return values, objective


@pytest.mark.parametrize("seed", range(40))
def test_every_hypothesis_is_solved_exactly(seed: int) -> None:
    rng = random.Random(seed)
    points, k = rng.randint(3, 12), rng.randint(2, 6)
    names = [f"c{j}" for j in range(k)]
    columns = {n: [rng.uniform(0, 50) for _ in range(points)] for n in names}
    truth = [rng.uniform(-1, 3) for _ in range(k)]
    target = [
        sum(t * columns[n][i] for t, n in zip(truth, names, strict=True)) + rng.gauss(0, 5)
        for i in range(points)
    ]
    coefficients = [
        Coefficient(n, rng.uniform(0, 2), rng.uniform(0.2, 5), 0.0, rng.uniform(0.5, 2.5))
        for n in names
    ]
    quadratic = Quadratic(normal_equations(columns, target, [1.0] * points), coefficients)
    for _ in range(6):
        # A hypothesis: some coefficients held in a box of their range, or at one value.
        limits: dict[str, tuple[float, float]] = {}
        for n in rng.sample(names, rng.randint(1, k)):
            low = rng.uniform(0.0, 1.5)
            limits[n] = (low, low) if rng.random() < 0.3 else (low, low + rng.uniform(0.1, 1))
        solution = quadratic.solve(limits)
        values, objective = _reference(columns, target, bounded(coefficients, limits))
        for n in names:
            assert solution.values[n] == pytest.approx(values[n], abs=1e-6)
        assert solution.objective == pytest.approx(objective, rel=1e-9, abs=1e-6)

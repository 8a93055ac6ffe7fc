"""Judging differences: bootstrap p-values, Holm's correction across every test, and more
resamples where a thousand cannot resolve Holm's thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.compare.definitions import METRICS
from analyzer.compare.significance import (
    FAMILY_ALPHA,
    Contrast,
    holm,
    judge,
    refine,
    resamples_for,
    run_test,
)
from analyzer.compare.stats import Floats, Sample, bootstrap

INVALID_JSON = next(m for m in METRICS if m.key == "invalid_json_rate")


def test_holm_rejects_step_down_and_adjusts_as_published() -> None:
    # Holm (1979) by hand: sorted 0.005, 0.01, 0.03, 0.04 against 0.05/4, 0.05/3, 0.05/2, 0.05.
    # 0.03 > 0.025 stops the procedure: 0.04 is not rejected although it is below 0.05.
    got = holm([0.01, 0.04, 0.03, 0.005], 0.05)
    assert [r for r, _ in got] == [True, False, False, True]
    adjusted = [p for _, p in got]
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # Unknown p-values are neither counted nor rejected.
    assert holm([None, 0.001], 0.05) == [(False, None), (True, pytest.approx(0.001))]


def _sample(values: list[float], seed: str, resamples: int = 1_000) -> Sample:
    return Sample(
        {"invalid_json": values, "calls": [1.0] * len(values)}, ["t"] * len(values), resamples, seed
    )


def _test(faulty: list[float], clean: list[float], resamples: int = 1_000) -> Contrast:
    a = bootstrap(INVALID_JSON.statistic, _sample(faulty, "a", resamples))
    b = bootstrap(INVALID_JSON.statistic, _sample(clean, "b", resamples))
    test = run_test(INVALID_JSON, "faulty", a, "clean", b)
    assert test is not None
    return test


def test_a_thousand_resamples_cannot_pass_holm_over_many_tests_until_refined() -> None:
    faulty = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0] * 2
    clean = [0.0] * 20
    test = _test(faulty, clean)
    # Every replicate is above zero: the p-value is the smallest 1,000 resamples give.
    assert test.p_value() == pytest.approx(2 / 1001)
    family = [test] + [_test(clean, clean) for _ in range(29)]
    assert judge(family) == []  # 2/1001 > 0.05/30

    calls: list[tuple[str, int]] = []

    def more(group: str, specs: object, resamples: int) -> dict[str, Floats]:
        calls.append((group, resamples))
        values = faulty if group == "faulty" else clean
        sample = _sample(values, "a" if group == "faulty" else "b", resamples)
        return {INVALID_JSON.key: INVALID_JSON.statistic.replicate_array(sample)}

    refined = refine(family, more, 1_000)
    wanted = resamples_for(30)
    assert wanted == 2_400 and sorted(calls) == [("clean", wanted), ("faulty", wanted)]
    assert refined[0].replicates.size == wanted
    assert refined[0].p_value() == pytest.approx(2 / (wanted + 1))
    # Same seed, more resamples: the first thousand replicates are the ones drawn before.
    assert np.array_equal(refined[0].replicates[:1_000], test.replicates)
    [found] = judge(refined)
    assert (found.higher, found.lower, found.better) == ("faulty", "clean", "clean")
    assert found.p_adjusted is not None and found.p_adjusted <= FAMILY_ALPHA
    assert found.resamples == wanted and not found.paired and found.p_method == "percentile"
    assert "Holm-adjusted p" in found.text


def test_groups_too_large_to_resample_fall_back_to_the_normal_approximation() -> None:
    faulty = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0] * 2
    clean = [0.0] * 20
    family = [_test(faulty, clean)] + [_test(clean, clean) for _ in range(29)]
    refined = refine(family, lambda group, specs, resamples: None, 1_000)
    assert refined[0].method == "normal"
    p = refined[0].p_value()
    assert p is not None and p < FAMILY_ALPHA / 30
    [found] = judge(refined)
    assert found.p_method == "normal"


def test_no_difference_is_not_significant_and_a_tie_has_p_one() -> None:
    same = [1.0, 0.0] * 10
    test = _test(same, same)
    assert test.point == 0 and test.p_value() == 1.0
    assert judge([test]) == []

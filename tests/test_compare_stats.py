"""Bootstrap statistics of `traces compare`: coverage, degenerate samples, significance."""

from __future__ import annotations

import random
from collections.abc import Sequence

import duckdb
import pytest

from analyzer.compare.definitions import METRICS
from analyzer.compare.significance import MIN_RUNS_FOR_TEST, group_pairs, judge_metric
from analyzer.compare.stats import (
    F1,
    Bootstrapped,
    Mean,
    Quantile,
    Ratio,
    Sample,
    bootstrap,
    difference_interval,
    quantile,
    resample_indices,
    run_proportion,
    wilson_interval,
)

INVALID_JSON = next(m for m in METRICS if m.key == "invalid_json_rate")


def sample(resamples: int = 400, seed: str = "s", **columns: Sequence[float | None]) -> Sample:
    """A one-task sample of the given per-run columns."""
    runs = len(next(iter(columns.values())))
    return Sample(columns, ["task"] * runs, resamples, seed)


def test_interval_covers_a_known_bernoulli_rate_at_about_the_nominal_level() -> None:
    # 200 samples of 40 runs, each run one success/failure at p = 0.3; seeded, so the
    # coverage below is a fixed number, and it must sit near 95%.
    true_rate, runs, covered, trials = 0.3, 40, 0, 200
    for seed in range(trials):
        rng = random.Random(seed)
        success = [1.0 if rng.random() < true_rate else 0.0 for _ in range(runs)]
        data = sample(seed=f"coverage:{seed}", success=success, runs=[1.0] * runs)
        result = bootstrap(Ratio("success", "runs"), data)
        assert result.lo is not None and result.hi is not None
        covered += result.lo <= true_rate <= result.hi
    assert 0.89 <= covered / trials <= 0.99, covered


def test_ratio_interval_resamples_runs_and_covers_a_per_call_rate() -> None:
    # Runs make different numbers of calls; the per-call error rate is a ratio of sums, and
    # its interval over resampled runs still covers the true rate about 95% of the time.
    true_rate, runs, covered, trials = 0.2, 30, 0, 200
    for seed in range(trials):
        rng = random.Random(1_000 + seed)
        calls = [float(rng.randint(1, 9)) for _ in range(runs)]
        errors = [float(sum(rng.random() < true_rate for _ in range(int(c)))) for c in calls]
        data = sample(seed=f"ratio:{seed}", errors=errors, calls=calls)
        result = bootstrap(Ratio("errors", "calls"), data)
        assert result.lo is not None and result.hi is not None
        covered += result.lo <= true_rate <= result.hi
    assert 0.89 <= covered / trials <= 0.99, covered


def test_zero_denominators_give_no_value_instead_of_crashing() -> None:
    nothing = sample(errors=[0.0, 0.0, 0.0], calls=[0.0, 0.0, 0.0])
    none_at_all = bootstrap(Ratio("errors", "calls"), nothing)
    assert none_at_all.value is None and none_at_all.lo is None and none_at_all.hi is None
    assert none_at_all.units == 0
    # One run of three has calls: a value, but no spread worth an interval.
    one = bootstrap(Ratio("errors", "calls"), sample(errors=[1.0, 0, 0], calls=[4.0, 0, 0]))
    assert one.value == 0.25 and one.units == 1
    assert one.lo is None and one.hi is None
    assert bootstrap(F1(), sample(tp=[0.0], fp=[0.0], fn=[0.0])).value is None
    assert bootstrap(Mean("ttft"), sample(ttft=[None, None])).value is None
    assert bootstrap(Quantile("ttft", 0.5), sample(ttft=[None, None])).value is None


def test_a_single_run_has_a_value_and_no_interval() -> None:
    result = bootstrap(Ratio("errors", "calls"), sample(errors=[3.0], calls=[10.0]))
    assert result.value == pytest.approx(0.3)
    assert result.lo is None and result.hi is None and result.units == 1
    assert all(r == pytest.approx(0.3) for r in result.replicates)


def test_no_runs_at_all() -> None:
    empty = Sample({"ttft": []}, [], 50, "empty")
    assert empty.draws == [[]] * 50
    for stat in (Quantile("ttft", 0.5), Mean("ttft"), Ratio("ttft", "ttft")):
        result = bootstrap(stat, empty)
        assert result.value is None and result.lo is None and result.units == 0


def test_resampling_is_seeded_and_keeps_each_task_at_its_size() -> None:
    strata = ["chain"] * 5 + ["files"] * 3
    first = resample_indices(strata, 50, "sim:0")
    assert first == resample_indices(strata, 50, "sim:0")
    assert first != resample_indices(strata, 50, "sim:1")
    for draw in first:
        assert sum(1 for i in draw if strata[i] == "chain") == 5
        assert sum(1 for i in draw if strata[i] == "files") == 3


def test_replicates_recompute_each_statistic_on_the_same_draws() -> None:
    values = [4.0, None, 1.0, 9.0, 2.0, None, 7.0]
    data = sample(resamples=30, v=values, n=[1.0] * len(values))
    for stat, expected in (
        (Mean("v"), lambda picked: sum(picked) / len(picked)),
        (Quantile("v", 0.5), lambda picked: quantile(picked, 0.5)),
    ):
        for draw, replicate in zip(data.draws, stat.replicates(data), strict=True):
            picked = [x for x in (values[i] for i in draw) if x is not None]
            assert replicate == (pytest.approx(expected(picked)) if picked else None)
    assert Mean("v").point(data) == pytest.approx(23 / 5)
    assert Quantile("v", 0.5).point(data) == 4.0


@pytest.mark.parametrize("q", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_quantile_matches_duckdb_quantile_cont(q: float) -> None:
    values = [3.0, 7.0, 1.0, 12.5, 8.0, 8.0, 2.0]
    conn = duckdb.connect()
    row = conn.execute(
        "SELECT quantile_cont(v, ?) FROM (SELECT unnest(?) AS v)", [q, values]
    ).fetchone()
    conn.close()
    assert row is not None
    assert quantile(values, q) == pytest.approx(row[0])
    assert quantile([], q) is None


def test_f1_from_fractional_counts() -> None:
    # K2VV's formula on summed counts: 2·TP / (2·TP + FP + FN).
    data = sample(tp=[1.0, 0.5], fp=[0.0, 0.5], fn=[1.0, 0.0])
    assert F1().point(data) == pytest.approx(3 / (3 + 0.5 + 1))
    assert F1().units(data) == 2
    for draw, replicate in zip(data.draws, F1().replicates(data), strict=True):
        tp = sum([1.0, 0.5][i] for i in draw)
        fp = sum([0.0, 0.5][i] for i in draw)
        fn = sum([1.0, 0.0][i] for i in draw)
        assert replicate == pytest.approx(2 * tp / (2 * tp + fp + fn))


def _rate(values: list[float], seed: str) -> Bootstrapped:
    return bootstrap(Ratio("x", "n"), sample(500, seed, x=values, n=[1.0] * len(values)))


def test_difference_interval_separates_different_rates_only() -> None:
    runs = 40
    rng = random.Random(7)
    clean = [0.0] * runs
    faulty = [1.0 if rng.random() < 0.25 else 0.0 for _ in range(runs)]
    same = rng.sample(faulty, k=runs)  # the same rate in another order

    apart = difference_interval(_rate(faulty, "a").replicates, _rate(clean, "b").replicates)
    assert apart is not None and apart[0] > 0
    overlapping = difference_interval(_rate(faulty, "a").replicates, _rate(same, "c").replicates)
    assert overlapping is not None and overlapping[0] < 0 < overlapping[1]
    # Replicates undefined in most resamples give no interval at all.
    assert difference_interval((None, None, 1.0), (0.0, 0.0, 0.0)) is None


def test_judging_needs_enough_runs_and_names_the_better_group() -> None:
    calls = [5.0] * 6
    faulty = bootstrap(
        INVALID_JSON.statistic, sample(300, "f", invalid_json=[1, 2] * 3, calls=calls)
    )
    clean = bootstrap(INVALID_JSON.statistic, sample(300, "c", invalid_json=[0] * 6, calls=calls))
    tested, found = judge_metric(
        INVALID_JSON, {"clean": clean, "faulty": faulty}, group_pairs(["clean", "faulty"], None)
    )
    assert tested == 1
    [difference] = found
    assert (difference.higher, difference.lower, difference.better) == ("faulty", "clean", "clean")
    assert difference.lo > 0 and difference.difference == pytest.approx(0.3)
    assert "invalid_json per call" in difference.text and "clean does better" in difference.text

    few = MIN_RUNS_FOR_TEST - 1
    small = bootstrap(
        INVALID_JSON.statistic, sample(300, "s", invalid_json=[2] * few, calls=[5.0] * few)
    )
    tested, found = judge_metric(
        INVALID_JSON, {"clean": clean, "small": small}, [("clean", "small")]
    )
    assert (tested, found) == (0, [])


def test_pairs_against_a_reference_or_all_pairs() -> None:
    assert group_pairs(["a", "b", "c"], None) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert group_pairs(["a", "b", "c"], "b") == [("b", "a"), ("b", "c")]


@pytest.mark.parametrize(
    ("successes", "trials", "lo", "hi"),
    [(5, 5, 0.5655, 1.0), (0, 10, 0.0, 0.2775), (50, 100, 0.4038, 0.5962), (1, 1, 0.2065, 1.0)],
)
def test_wilson_interval_matches_the_published_values(
    successes: int, trials: int, lo: float, hi: float
) -> None:
    got = wilson_interval(successes, trials)
    assert got == (pytest.approx(lo, abs=1e-4), pytest.approx(hi, abs=1e-4))


def test_a_share_of_runs_gets_wilsons_interval_and_other_rates_the_bootstrap() -> None:
    # Five successes of five runs: a percentile bootstrap would say 100% to 100%.
    runs = sample(success=[1.0] * 5, success_known=[1.0] * 5)
    success = bootstrap(Ratio("success", "success_known"), runs)
    assert success.value == 1.0 and success.hi == 1.0
    assert success.lo == pytest.approx(0.5655, abs=1e-4)
    # An unknown run is in neither count: 3 of 4 known.
    runs = sample(success=[1.0, 1.0, 0.0, None, 1.0], success_known=[1.0, 1.0, 1.0, 0.0, 1.0])
    assert run_proportion(Ratio("success", "success_known"), runs) == (3, 4)
    # Counts per run (calls) are not a share of runs: the bootstrap's interval.
    calls = sample(bad=[0.0, 2.0, 1.0, 0.0], calls=[3.0, 4.0, 2.0, 5.0])
    assert run_proportion(Ratio("bad", "calls"), calls) is None

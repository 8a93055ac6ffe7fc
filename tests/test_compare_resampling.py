"""A comparison's groups resampled in worker processes give the numbers of one process.

Each group draws from its own seeded stream, so where it is computed changes nothing: every
value, interval, unit count and replicate below is compared exactly (bit for bit), with real
worker processes (`python -m analyzer.compare.worker`).
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import threading

import pytest

from analyzer.compare.resampling import (
    GroupJob,
    _Worker,
    bootstrap_groups,
    bootstrap_job,
    needed_columns,
    split,
)
from analyzer.compare.stats import (
    F1,
    Bootstrapped,
    Column,
    Mean,
    Quantile,
    Ratio,
    Sample,
    Statistic,
)

STATISTICS: list[tuple[str, Statistic]] = [
    ("rate", Ratio("ok", "n")),
    ("per_call", Ratio("bad", "calls")),
    ("cost", Mean("cost")),
    ("latency_p50", Quantile("latency", 0.5)),
    ("latency_p90", Quantile("latency", 0.9)),
    ("f1", F1()),
]


def _columns(runs: int, rng: random.Random) -> dict[str, list[float | None]]:
    """Counts, fractional values (summed left to right), and columns with runs lacking a
    value, as a comparison's run table has them."""
    return {
        "ok": [float(rng.random() < 0.7) for _ in range(runs)],
        "n": [1.0] * runs,
        "bad": [float(rng.randrange(3)) for _ in range(runs)],
        "calls": [float(rng.randrange(1, 9)) for _ in range(runs)],
        "cost": [None if rng.random() < 0.1 else rng.random() / 7 for _ in range(runs)],
        "latency": [None if rng.random() < 0.2 else rng.lognormvariate(6, 1) for _ in range(runs)],
        "tp": [rng.random() * 3 for _ in range(runs)],
        "fp": [float(rng.randrange(2)) for _ in range(runs)],
        "fn": [rng.random() for _ in range(runs)],
    }


def _jobs(sizes: list[int], resamples: int = 300) -> list[GroupJob]:
    rng = random.Random(5)
    jobs = []
    for index, runs in enumerate(sizes):
        columns = _columns(runs, rng)
        jobs.append(
            GroupJob(
                group=f"g{index}",
                columns={name: Column.of(values) for name, values in columns.items()},
                strata=sorted(rng.choice(["chain", "files", "web"]) for _ in range(runs)),
                resamples=resamples,
                seed=f"0:g{index}",
                statistics=STATISTICS,
            )
        )
    return jobs


def _same(a: dict[str, Bootstrapped], b: dict[str, Bootstrapped]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        assert (x.value, x.lo, x.hi, x.units) == (y.value, y.lo, y.hi, y.units), key
        assert x.replicates.tobytes() == y.replicates.tobytes(), key


def test_groups_split_between_processes_give_the_numbers_of_one_process() -> None:
    jobs = _jobs([120, 80, 95, 60, 110])
    alone = bootstrap_groups(jobs, processes=1)
    shared = bootstrap_groups(jobs, processes=3)  # this process and two workers
    assert list(alone) == list(shared) == [job.group for job in jobs]
    for group in alone:
        _same(alone[group], shared[group])
    assert alone["g0"]["latency_p90"].lo is not None  # intervals were computed, not skipped


def test_a_worker_that_vanished_has_its_share_computed_here() -> None:
    jobs = _jobs([70, 90])
    worker = _Worker(jobs)
    worker.child.process.kill()  # before or while it reads: either way it answers nothing
    worker.child.process.wait()
    try:
        collected = worker.collect()
    finally:
        worker.stop(0.0)
    for job in jobs:
        _same(collected[job.group], bootstrap_job(job))


def test_shares_balance_the_draws_and_this_process_takes_the_larger() -> None:
    jobs = _jobs([100] * 5, resamples=10)
    shares = split(jobs, 2)
    assert [[j.group for j in share] for share in shares] == [["g0", "g2", "g4"], ["g1", "g3"]]
    uneven = split(_jobs([500, 100, 100, 100, 100, 100], resamples=10), 2)
    assert [[j.group for j in share] for share in uneven] == [
        ["g0"],
        ["g1", "g2", "g3", "g4", "g5"],
    ]
    assert split(jobs, 1) == [jobs]


def test_columns_as_arrays_read_as_the_lists_they_came_from() -> None:
    columns = _columns(150, random.Random(9))
    strata = ["chain"] * 100 + ["files"] * 50
    from_lists = Sample(columns, strata, 200, "s")
    from_arrays = Sample({k: Column.of(v) for k, v in columns.items()}, strata, 200, "s")
    for key, stat in STATISTICS:
        assert stat.point(from_lists) == stat.point(from_arrays), key
        assert stat.units(from_lists) == stat.units(from_arrays), key
        a, b = stat.replicate_array(from_lists), stat.replicate_array(from_arrays)
        assert a.tobytes() == b.tobytes(), key
    assert from_arrays.values("cost") == [v for v in columns["cost"] if v is not None]
    assert needed_columns([stat for _, stat in STATISTICS]) == set(columns)


def _left_to_right(values: list[float]) -> float:
    total = 0.0
    for value in values:
        total += value
    return total


@pytest.mark.parametrize("seed", ["a", "b"])
def test_fractional_sums_per_draw_are_pythons_left_to_right_sums(seed: str) -> None:
    # Fractional values are not added in any other order: each draw's sum is the one a
    # left-to-right loop (Python 3.11's `sum`) makes over the picks in draw order, to the
    # last bit (numpy adds the draws side by side, pick after pick).
    rng = random.Random(seed)
    values = [rng.random() * 10 ** rng.randrange(-3, 4) for _ in range(257)]
    strata = [rng.choice("xyz") for _ in range(257)]
    data = Sample({"v": values}, strata, 90, seed)
    sums = data.sums("v").tolist()
    assert sums == [_left_to_right([values[i] for i in draw]) for draw in data.draws]
    assert any(
        math.fsum(values[i] for i in draw) != s for draw, s in zip(data.draws, sums, strict=True)
    )


def test_a_column_reads_none_as_missing_and_keeps_what_a_list_gave() -> None:
    column = Column.of([None, -0.0, 2.5, math.nan, 0])
    assert column.present.tolist() == [False, True, True, True, True]
    zeros = column.zeros.tolist()
    # `v or 0.0`, as the lists were read: None and -0.0 are 0.0, NaN stays NaN.
    assert [math.copysign(1, z) for z in zeros[:2]] == [1.0, 1.0] and zeros[:3] == [0, 0, 2.5]
    assert math.isnan(zeros[3]) and zeros[4] == 0.0


def test_an_error_here_stops_the_workers_and_their_senders() -> None:
    good, bad = _jobs([60, 200])
    # This process takes the larger job, which reads a column it was not given.
    broken = GroupJob(
        group=bad.group,
        columns=bad.columns,
        strata=bad.strata,
        resamples=bad.resamples,
        seed=bad.seed,
        statistics=[("missing", Mean("no_such_column"))],
    )
    with pytest.raises(KeyError, match="no_such_column"):
        bootstrap_groups([good, broken], processes=2)
    assert not [t for t in threading.enumerate() if t.name == "resampling-jobs"]


_BLAS_THREADS = """
import os, sys
from analyzer.compare.numeric import np
np.ones((200, 200)) @ np.ones((200, 200))
print(len(os.listdir("/proc/self/task")), os.environ.get("OPENBLAS_NUM_THREADS"))
"""


@pytest.mark.parametrize("given", [None, "2"])
def test_numpy_runs_its_blas_on_one_thread_and_leaves_the_environment_as_it_was(
    given: str | None,
) -> None:
    # Spinning BLAS threads took the resampling worker's core; the processes a comparison
    # starts later (a suite's tools) must not inherit the setting, and a user's own wins.
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    done = subprocess.run(
        [sys.executable, "-c", _BLAS_THREADS], env=env, capture_output=True, text=True, check=True
    )
    threads, seen = done.stdout.split()
    assert seen == (given or "None")
    assert int(threads) == (1 if given is None else 2)

"""The vectorised bootstrap gives today's numbers: on a simulator-recorded store, every
estimate, interval and replicate of `traces compare` equals what the pure-Python bootstrap
(kept as tests/bootstrap_reference.py) computes from the same runs and seed.

Sums over a draw of whole-number columns are exact in any order; the others are added left
to right, as Python 3.11's `sum` did. From Python 3.12 on, `sum` compensates its rounding,
so there the reference's sums of fractional columns may differ in the last bit: replicates
are then compared to 1e-12 relative, everything else still exactly.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import bootstrap_reference as reference
import pytest

from analyzer.compare.build import _derived_columns, build_comparison
from analyzer.compare.costs import PriceList
from analyzer.compare.definitions import METRICS, finding_metrics
from analyzer.compare.metrics import load_run_table
from analyzer.compare.pairing import pair_counts
from analyzer.compare.selection import Selection, select_runs
from analyzer.compare.stats import Sample, bootstrap, difference_interval, resample_indices
from analyzer.compare.task_mix import keep_shared_tasks
from traces.store.database import open_for_reading

from conftest import TASKS, run_cli

pytestmark = pytest.mark.slow  # records 36 runs against three simulators

CLEAN = "sim"
SEED = 11
RESAMPLES = 400
EXACT_SUMS = sys.version_info < (3, 12)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tasks, six runs each, against a clean simulator and two faulty ones."""
    base = tmp_path_factory.mktemp("identity")
    suite = base / "suite.toml"
    suite.write_text(
        'name = "identity"\ndescription = "Two tasks, three hosts."\n'
        "[defaults]\nstream = true\nconcurrency = 4\n"
        f'[[tasks]]\npath = "{TASKS / "chain_short.toml"}"\nrepeats = 6\n'
        f'[[tasks]]\npath = "{TASKS / "files.toml"}"\nrepeats = 6\n',
        encoding="utf-8",
    )
    db = base / "t.duckdb"
    done = run_cli(
        "compare",
        "--suite",
        str(suite),
        "--seed",
        "3",
        "--dialect",
        "openai",
        "--dialect",
        "openai:invalid_json_arguments=0.3",
        "--dialect",
        "moonshot:reasoning_dropped_from_history=1",
        "--reference",
        CLEAN,
        "--db",
        str(db),
    )
    assert done.returncode == 0, done.stderr
    return db


def _old(stat: object) -> Any:
    """The reference's statistic of the same kind and fields."""
    return getattr(reference, type(stat).__name__)(**asdict(stat))  # type: ignore[call-overload]


def _same_replicates(new: list[float | None], old: list[float | None]) -> None:
    assert len(new) == len(old)
    for a, b in zip(new, old, strict=True):
        if EXACT_SUMS or a is None or b is None:
            assert a == b
        else:
            assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)


def test_every_estimate_interval_and_replicate_is_the_pure_python_one(store: Path) -> None:
    conn = open_for_reading(store)
    try:
        comparison = build_comparison(
            conn, Selection(), prices=PriceList({}), reference=CLEAN, resamples=RESAMPLES, seed=SEED
        )
        select_runs(conn, Selection())
        keep_shared_tasks(conn)
        table = load_run_table(conn)
        columns = _derived_columns(table, PriceList({}))
        pairs = pair_counts(conn, CLEAN)
    finally:
        conn.close()
    for which, name in enumerate(("tp", "fp", "fn", "paired_steps")):
        columns[name] = list(pairs.column(table.run_ids, which))
    specs = list(METRICS)
    for dimension in ("kind", "layer"):
        for name in table.findings[dimension]:
            specs += finding_metrics(dimension, name)  # type: ignore[arg-type]
    groups = [g.name for g in comparison.groups]
    assert len(groups) == 3 and len(specs) > len(METRICS)
    compared = 0
    replicates: dict[tuple[str, str], tuple[Any, Any]] = {}
    for group in groups:
        rows = table.rows_of(group)
        group_columns = {name: [values[i] for i in rows] for name, values in columns.items()}
        strata = [table.tasks[i] for i in rows]
        assert len(set(strata)) == 2
        seed = f"{SEED}:{group}"
        assert resample_indices(strata, RESAMPLES, seed) == reference.resample_indices(
            strata, RESAMPLES, seed
        )
        new_sample = Sample(group_columns, strata, RESAMPLES, seed)
        old_sample = reference.Sample(group_columns, strata, RESAMPLES, seed)
        for spec in specs:
            if spec.key == "tool_call_f1" and group == CLEAN:
                continue
            new = bootstrap(spec.statistic, new_sample)
            old = reference.bootstrap(_old(spec.statistic), old_sample)
            assert (new.value, new.units) == (old.value, old.units), spec.key
            estimate = comparison.metric(spec.key).values.get(group)
            if old.value is None:
                assert estimate is None
            else:
                assert estimate is not None
                assert (estimate.value, estimate.runs) == (old.value, old.units), spec.key
                if EXACT_SUMS:
                    assert (estimate.lo, estimate.hi) == (old.lo, old.hi), spec.key
                else:
                    assert estimate.lo == pytest.approx(old.lo, rel=1e-12)
                    assert estimate.hi == pytest.approx(old.hi, rel=1e-12)
            _same_replicates(
                [None if math.isnan(v) else v for v in new.replicates.tolist()],
                list(old.replicates),
            )
            replicates[(group, spec.key)] = (new.replicates, old.replicates)
            compared += 1
    assert compared > 3 * len(METRICS)
    # Difference intervals, the basis of significance, from the same replicates.
    for key in {k for _, k in replicates}:
        for a in groups:
            for b in groups:
                if a == b or (a, key) not in replicates or (b, key) not in replicates:
                    continue
                new_interval = difference_interval(replicates[(a, key)][0], replicates[(b, key)][0])
                old_interval = reference.difference_interval(
                    replicates[(a, key)][1], replicates[(b, key)][1]
                )
                if EXACT_SUMS or new_interval is None or old_interval is None:
                    assert new_interval == old_interval, key
                else:
                    assert new_interval == pytest.approx(old_interval, rel=1e-12)


def test_groups_resampled_in_worker_processes_give_the_same_comparison(store: Path) -> None:
    conn = open_for_reading(store)
    try:
        comparisons = [
            build_comparison(
                conn,
                Selection(),
                prices=PriceList({}),
                reference=CLEAN,
                resamples=RESAMPLES,
                seed=SEED,
                processes=processes,
            )
            for processes in (1, 2)
        ]
    finally:
        conn.close()
    # The JSON `traces compare --format json` prints, but for the time it was made.
    alone, split = (json.loads(c.to_json()) | {"generated_at": None} for c in comparisons)
    assert alone == split
    assert len(alone["groups"]) == 3 and alone["metrics"] and alone["comparisons"]

"""Putting a comparison together: select runs, fold them per run in SQL, bootstrap per group,
judge the differences."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import replace
from datetime import UTC, datetime

import duckdb

from analyzer.compare.costs import PriceList
from analyzer.compare.definitions import METRICS, MetricSpec, finding_metrics
from analyzer.compare.metrics import STEP_SUM_COLUMNS, RunTable, load_run_table
from analyzer.compare.model import Comparison, Estimate, Group, HistogramBucket, Metric, PairedTest
from analyzer.compare.paired import (
    RequestTable,
    load_request_table,
    paired_difference,
    per_request,
)
from analyzer.compare.pairing import pair_counts
from analyzer.compare.resampling import GroupJob, bootstrap_groups, needed_columns
from analyzer.compare.selection import Selection, no_match_error, select_runs
from analyzer.compare.significance import (
    FAMILY_ALPHA,
    MAX_TEST_DRAWS,
    MIN_RUNS_FOR_TEST,
    Contrast,
    group_pairs,
    judge,
    paired_test,
    refine,
    resamples_for,
    run_test,
)
from analyzer.compare.stats import (
    CONFIDENCE,
    DEFAULT_RESAMPLES,
    Bootstrapped,
    Column,
    Floats,
    Sample,
)
from analyzer.compare.task_mix import keep_shared_tasks
from analyzer.compare.task_mix import notes as task_mix_notes
from analyzer.compare.task_success import task_success
from traces.errors import TracesError
from traces.store.database import is_served

MAX_BUCKETS = 10
"""Bars of the steps-to-finish histogram."""

_NO_REFERENCE_METRICS = frozenset({"tool_call_f1"})


def build_comparison(
    conn: duckdb.DuckDBPyConnection,
    selection: Selection,
    *,
    prices: PriceList,
    reference: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    suite: str | None = None,
    group_order: Sequence[str] = (),
    processes: int | None = None,
) -> Comparison:
    """Compare the selected runs group by group; one-line TracesError when nothing matches
    or the reference is not one of the groups. `group_order` puts those groups first;
    `processes` share the groups' resampling (by default as `bootstrap_groups` decides: the
    numbers are the same either way)."""
    if select_runs(conn, selection) == 0:
        raise no_match_error(conn, selection)
    mix = keep_shared_tasks(conn)
    table = load_run_table(conn)
    # Each query's cached blocks dropped before the next (hundreds of MiB over a million
    # steps): the peak is then one query's, not their sum.
    release_cached_blocks(conn)
    present = set(table.groups)
    groups = [g for g in group_order if g in present]
    groups += sorted(present - set(groups))
    if reference is not None and reference not in present:
        raise TracesError(
            f"--reference {reference!r} is not one of the compared groups ({', '.join(groups)})"
        )
    columns = _derived_columns(table, prices)
    if reference is not None:
        pairs = pair_counts(conn, reference)
        release_cached_blocks(conn)
        for which, name in enumerate(("tp", "fp", "fn", "paired_steps")):
            columns[name] = list(pairs.column(table.run_ids, which))

    specs = list(METRICS)
    for dimension in ("kind", "layer"):
        for name in table.findings[dimension]:
            specs += finding_metrics(dimension, name)

    judged = group_pairs(groups, reference) if mix.comparable else []
    requests = load_request_table(conn, _step_totals(table, groups)) if judged else None
    # Everything is read: the blocks DuckDB cached for it (hundreds of MiB over a million
    # steps) would otherwise stay beside the resampling's arrays.
    release_cached_blocks(conn)
    results = bootstrap_groups(
        [_group_job(table, columns, g, specs, reference, resamples, seed) for g in groups],
        processes,
    )
    metrics = _metrics(specs, results, groups)
    # Runs are resampled within their task: a task a group ran once gives no spread, so a
    # group whose runs are mostly such (probes: one run per probe) cannot be tested over runs.
    resampled = {g: _resampled_runs(table, g) for g in groups}
    unresampled = [g for g in groups if resampled[g] < MIN_RUNS_FOR_TEST]
    run_pairs = [(a, b) for a, b in judged if a not in unresampled and b not in unresampled]
    tests = _plan_tests(specs, results, judged, run_pairs, requests, resamples, seed)
    tests = _refine_paired(tests, requests, seed)

    def more(group: str, wanted: Sequence[MetricSpec], count: int) -> dict[str, Floats] | None:
        rows = table.rows_of(group)
        if count * len(rows) > MAX_TEST_DRAWS:
            return None
        sample = _sample(table, columns, group, count, seed)
        sample.prepare([spec.statistic for spec in wanted])
        return {spec.key: spec.statistic.replicate_array(sample) for spec in wanted}

    tests = refine(tests, more, resamples)
    significant = judge(tests)
    return Comparison(
        generated_at=datetime.now(UTC).replace(tzinfo=None),
        by=selection.by,
        reference=reference,
        selection=selection,
        suite=suite,
        confidence=CONFIDENCE,
        resamples=resamples,
        seed=seed,
        groups=[_group_info(table, columns, g, reference) for g in groups],
        metrics=metrics,
        steps_histogram=_histogram(table, columns["steps_to_finish"], groups),
        comparisons=len(tests),
        significant=significant,
        family_alpha=FAMILY_ALPHA,
        significance=significance_text(len(tests)),
        paired_tests=[
            PairedTest(metric=t.spec.key, a=t.a, b=t.b, requests=t.requests)
            for t in tests
            if t.requests is not None
        ],
        notes=task_mix_notes(mix, len(groups))
        + _notes(table, columns, groups, reference)
        + _unresampled_notes(unresampled if judged else []),
        shared_tasks=mix.shared,
        left_out=mix.left_out,
        like_with_like=mix.comparable,
        task_success=task_success(conn),
    )


SHARED_DATABASE: ContextVar[bool] = ContextVar("shared_database", default=False)
"""Set (in the thread that compares) where other threads query the same database meanwhile:
`traces view`'s pages. The memory limit is the database's, not the connection's, and a
page's query that ran while it was lowered would fail for want of memory."""


def release_cached_blocks(conn: duckdb.DuckDBPyConnection) -> None:
    """Let DuckDB drop the data blocks it keeps cached after a query (lowering the memory
    limit evicts them), then put the limit back as it was. Not where the configuration
    cannot be set: a session on the store's server (whose memory is not this process's), or
    a database a read-only SQL query locked (`traces view` answers both on one database);
    nor where other threads share the database (`SHARED_DATABASE`)."""
    if SHARED_DATABASE.get() or is_served(conn):
        return
    row = conn.execute(
        "SELECT current_setting('memory_limit'), current_setting('lock_configuration')"
    ).fetchone()
    if row is None or row[1]:
        return
    conn.execute("SET memory_limit = '16MB'")
    conn.execute(f"SET memory_limit = '{row[0]}'")


def significance_text(tests: int) -> str:
    """How significance is judged, in words, for the output."""
    return f"Holm-corrected across {tests} tests, family-wise α={FAMILY_ALPHA:g}"


def _metrics(
    specs: list[MetricSpec], results: dict[str, dict[str, Bootstrapped]], groups: list[str]
) -> list[Metric]:
    """Every metric's row."""
    metrics: list[Metric] = []
    for spec in specs:
        per_group = {g: results[g][spec.key] for g in groups if spec.key in results[g]}
        metrics.append(
            Metric(
                key=spec.key,
                label=spec.label,
                section=spec.section,
                unit=spec.unit,
                better=spec.better,
                description=spec.description,
                values={
                    g: Estimate(value=b.value, lo=b.lo, hi=b.hi, runs=b.units)
                    for g, b in per_group.items()
                    if b.value is not None
                },
            )
        )
    return metrics


def _plan_tests(
    specs: list[MetricSpec],
    results: dict[str, dict[str, Bootstrapped]],
    pairs: list[tuple[str, str]],
    run_pairs: list[tuple[str, str]],
    requests: RequestTable | None,
    resamples: int,
    seed: int,
) -> list[Contrast]:
    """One test per metric and pair that can be judged: paired on shared requests where the
    metric is defined per request and the pair shares enough of them, else over runs (for
    the pairs in `run_pairs`)."""
    tests: list[Contrast] = []
    for spec in specs:
        per_request_stat = per_request(spec.statistic)
        for a, b in pairs:
            if per_request_stat is not None and requests is not None:
                paired = paired_difference(
                    requests, per_request_stat, a, b, resamples, f"{seed}:{spec.key}"
                )
                if paired is not None:
                    tests.append(paired_test(spec, a, b, paired))
                    continue
            if (a, b) not in run_pairs:
                continue
            ra, rb = results[a].get(spec.key), results[b].get(spec.key)
            test = run_test(spec, a, ra, b, rb) if ra is not None and rb is not None else None
            if test is not None:
                tests.append(test)
    return tests


def _step_totals(table: RunTable, groups: list[str]) -> dict[str, dict[str, float]]:
    """Each group's step sums over all its runs."""
    totals: dict[str, dict[str, float]] = {}
    for g in groups:
        rows = table.rows_of(g)
        totals[g] = {
            name: float(sum(table.columns[name][i] or 0.0 for i in rows))
            for name in STEP_SUM_COLUMNS
        }
    return totals


def _resampled_runs(table: RunTable, group: str) -> int:
    """Runs of `group` whose task it ran more than once: the runs resampling can vary."""
    sizes = Counter(table.tasks[i] for i in table.rows_of(group))
    return sum(size for size in sizes.values() if size > 1)


def _unresampled_notes(groups: list[str]) -> list[str]:
    if not groups:
        return []
    return [
        f"{', '.join(groups)}: fewer than {MIN_RUNS_FOR_TEST} runs of a task run more than "
        "once (probes run each task once), so runs cannot be resampled within tasks: only "
        "rates defined per request are judged for them, paired on the requests both groups "
        "answered."
    ]


def _refine_paired(
    tests: list[Contrast], requests: RequestTable | None, seed: int
) -> list[Contrast]:
    """Paired tests redrawn with enough resamples to resolve Holm's first threshold (their
    requests are few, so this is cheap; beyond the draw budget, the normal approximation)."""
    wanted = resamples_for(len(tests))
    out: list[Contrast] = []
    for test in tests:
        stat = per_request(test.spec.statistic)
        if requests is None or test.requests is None or stat is None:
            out.append(test)
            continue
        if wanted * test.requests > MAX_TEST_DRAWS:
            out.append(replace(test, method="normal"))
            continue
        if wanted <= test.replicates.size:
            out.append(test)
            continue
        paired = paired_difference(
            requests, stat, test.a, test.b, wanted, f"{seed}:{test.spec.key}"
        )
        out.append(test if paired is None else paired_test(test.spec, test.a, test.b, paired))
    return out


def _derived_columns(table: RunTable, prices: PriceList) -> dict[str, list[float | None]]:
    """The table's columns plus the ones metrics need that SQL does not give directly."""
    columns = dict(table.columns)
    n = len(table.run_ids)
    columns["success_known"] = [0.0 if s is None else 1.0 for s in columns["success"]]
    columns["cost_usd"] = [
        prices.run_cost(
            table.providers[i],
            table.models[i],
            columns["prompt_tokens"][i],
            columns["cached_tokens"][i] or 0.0,
            columns["completion_tokens"][i],
        )
        for i in range(n)
    ]
    total = [0.0] * n
    for dimension, counts in table.findings.items():
        for name, values in counts.items():
            columns[f"finding.{dimension}.{name}"] = list(values)
            # Over finished runs, as the share's denominator: an interrupted run has no outcome.
            columns[f"has.finding.{dimension}.{name}"] = [
                1.0 if v > 0 and f else 0.0
                for v, f in zip(values, columns["finished"], strict=True)
            ]
            if dimension == "kind":
                total = [t + v for t, v in zip(total, values, strict=True)]
    columns["findings_total"] = list(total)
    return columns


def _sample(
    table: RunTable,
    columns: dict[str, list[float | None]],
    group: str,
    resamples: int,
    seed: int,
) -> Sample:
    rows = table.rows_of(group)
    return Sample(
        {name: [values[i] for i in rows] for name, values in columns.items()},
        [table.tasks[i] for i in rows],
        resamples,
        # Each group draws from its own seeded stream: adding a group changes no other's (and
        # more resamples of a group begin with the same draws).
        f"{seed}:{group}",
    )


def _group_job(
    table: RunTable,
    columns: dict[str, list[float | None]],
    group: str,
    specs: list[MetricSpec],
    reference: str | None,
    resamples: int,
    seed: int,
) -> GroupJob:
    """What resampling `group` needs: its statistics, and only the columns they read (a
    worker process is sent them)."""
    rows = table.rows_of(group)
    wanted = [
        spec
        for spec in specs
        if not (spec.key in _NO_REFERENCE_METRICS and (reference is None or group == reference))
        # a partly priced group would report a cost that is too low
        and not (
            spec.key == "cost_per_run_usd" and any(columns["cost_usd"][i] is None for i in rows)
        )
    ]
    statistics = [spec.statistic for spec in wanted]

    def of_group(values: list[float | None]) -> list[float | None]:
        # Runs are sorted by group: a group's rows are one slice.
        if rows and rows[-1] - rows[0] == len(rows) - 1:
            return values[rows[0] : rows[-1] + 1]
        return [values[i] for i in rows]

    return GroupJob(
        group=group,
        columns={
            name: Column.of(of_group(columns[name])) for name in sorted(needed_columns(statistics))
        },
        strata=[table.tasks[i] for i in rows],
        resamples=resamples,
        # Each group draws from its own seeded stream: adding a group changes no other's (and
        # more resamples of a group begin with the same draws).
        seed=f"{seed}:{group}",
        statistics=[(spec.key, spec.statistic) for spec in wanted],
    )


def _group_info(
    table: RunTable, columns: dict[str, list[float | None]], group: str, reference: str | None
) -> Group:
    rows = table.rows_of(group)
    paired = None
    if reference is not None and group != reference:
        paired = int(sum(columns["paired_steps"][i] or 0 for i in rows))
    return Group(
        name=group,
        runs=len(rows),
        tasks=dict(sorted(Counter(table.tasks[i] for i in rows).items())),
        providers=sorted({table.providers[i] for i in rows}),
        models=sorted({table.models[i] for i in rows}),
        upstreams=table.upstreams.get(group, []),
        paired_steps=paired,
    )


def _histogram(
    table: RunTable, steps: Sequence[float | None], groups: list[str]
) -> list[HistogramBucket]:
    """Completed runs per bucket of steps, with one set of buckets for every group."""
    values = [int(s) for s in steps if s is not None]
    if not values:
        return []
    lo, hi = min(values), max(values)
    width = max(1, math.ceil((hi - lo + 1) / MAX_BUCKETS))
    buckets = [
        HistogramBucket(lo=start, hi=min(start + width - 1, hi), runs=dict.fromkeys(groups, 0))
        for start in range(lo, hi + 1, width)
    ]
    for group, value in zip(table.groups, steps, strict=True):
        if value is not None:
            buckets[(int(value) - lo) // width].runs[group] += 1
    return buckets


def _notes(
    table: RunTable,
    columns: dict[str, list[float | None]],
    groups: list[str],
    reference: str | None,
) -> list[str]:
    notes = []
    small = [g for g in groups if len(table.rows_of(g)) < MIN_RUNS_FOR_TEST]
    if small and len(groups) > 1:
        notes.append(
            f"{', '.join(small)}: fewer than {MIN_RUNS_FOR_TEST} runs, so differences "
            "involving them are not judged."
        )
    if reference is None:
        notes.append("tool_call_f1 needs a reference group (--reference NAME).")
    else:
        for group in groups:
            if group == reference:
                continue
            rows = table.rows_of(group)
            if not any(columns["paired_steps"][i] for i in rows):
                notes.append(
                    f"{group} answered none of the requests {reference} answered (different "
                    "tasks, seeds or history), so it has no tool_call_f1."
                )
    for group in groups:
        rows = table.rows_of(group)
        interrupted = sum(not columns["finished"][i] for i in rows)
        if interrupted:
            notes.append(
                f"{group}: {interrupted} of {len(rows)} runs were interrupted (their recorder "
                "stopped them): their steps count, the outcome rates leave them out "
                "(`traces record --resume` continues them)."
            )
        so_far = sum(bool(columns["findings_so_far"][i]) for i in rows)
        if so_far:
            notes.append(
                f"{group}: the findings of {so_far} of {len(rows)} runs are so far (checked "
                "while recording, up to a step before their last): finding rates count the "
                "steps checked (`traces analyze` checks the rest)."
            )
        unjudged = sum(columns["success"][i] is None and bool(columns["finished"][i]) for i in rows)
        if unjudged:
            notes.append(
                f"{group}: the success of {unjudged} of {len(rows)} runs is unknown (no answer "
                "was judged: the endpoint failed, or an imported log says nothing); task "
                "success leaves them out rather than count them as failures."
            )
        undecided = {
            part: sum(bool(flags[i]) for i in rows) if flags else 0
            for part in ("reasoning", "tool_results")
            for flags in [columns.get(f"{part}_undecided")]
        }
        if any(undecided.values()):
            which = " and ".join(
                f"the {label} of {undecided[part]}"
                for part, label in (("reasoning", "reasoning"), ("tool_results", "tool results"))
                if undecided[part]
            )
            notes.append(
                f"{group}: what the host kept is undecided for {which} of {len(rows)} runs "
                "(no behaviour held the probability a measure needs; `traces show RUN "
                "--ledger`): the retention ratios leave them out rather than guess."
            )
        unknown = sum(
            columns["prompt_tokens"][i] is None or columns["completion_tokens"][i] is None
            for i in rows
        )
        if unknown:
            notes.append(
                f"{group}: {unknown} of {len(rows)} runs reported no token usage (on some "
                "answered step); token means and costs leave them out rather than count 0."
            )
    if table.stale_runs:
        notes.append(
            f"{table.stale_runs} run(s) carry findings of an older version of the checks; "
            "finding rates and retention count what those found (`traces analyze` "
            "refreshes them)."
        )
    return notes

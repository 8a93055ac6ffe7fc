"""Putting a comparison together: select runs, fold them per run in SQL, bootstrap per group,
judge the differences."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import duckdb

from analyzer.compare.costs import PriceList
from analyzer.compare.definitions import METRICS, MetricSpec, finding_metrics
from analyzer.compare.metrics import RunTable, load_run_table
from analyzer.compare.model import Comparison, Difference, Estimate, Group, HistogramBucket, Metric
from analyzer.compare.pairing import pair_counts
from analyzer.compare.selection import Selection, no_match_error, select_runs
from analyzer.compare.significance import MIN_RUNS_FOR_TEST, group_pairs, judge_metric
from analyzer.compare.stats import (
    CONFIDENCE,
    DEFAULT_RESAMPLES,
    Bootstrapped,
    Sample,
    bootstrap,
)
from analyzer.compare.task_mix import keep_shared_tasks
from analyzer.compare.task_mix import notes as task_mix_notes
from analyzer.compare.task_success import task_success
from traces.errors import TracesError

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
) -> Comparison:
    """Compare the selected runs group by group; one-line TracesError when nothing matches
    or the reference is not one of the groups. `group_order` puts those groups first."""
    if select_runs(conn, selection) == 0:
        raise no_match_error(conn, selection)
    mix = keep_shared_tasks(conn)
    table = load_run_table(conn)
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
        for which, name in enumerate(("tp", "fp", "fn", "paired_steps")):
            columns[name] = list(pairs.column(table.run_ids, which))

    specs = list(METRICS)
    for dimension in ("kind", "layer"):
        for name in table.findings[dimension]:
            specs += finding_metrics(dimension, name)

    results = {
        g: _bootstrap_group(table, columns, g, specs, reference, resamples, seed) for g in groups
    }
    judged = group_pairs(groups, reference) if mix.comparable else []
    metrics, significant, tested = _judge(specs, results, groups, judged)
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
        comparisons=tested,
        significant=significant,
        notes=task_mix_notes(mix, len(groups)) + _notes(table, columns, groups, reference),
        shared_tasks=mix.shared,
        left_out=mix.left_out,
        task_success=task_success(conn),
    )


def _judge(
    specs: list[MetricSpec],
    results: dict[str, dict[str, Bootstrapped]],
    groups: list[str],
    pairs: list[tuple[str, str]],
) -> tuple[list[Metric], list[Difference], int]:
    """Every metric's row, the significant differences, and how many were tested."""
    metrics: list[Metric] = []
    significant: list[Difference] = []
    tested = 0
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
        n, found = judge_metric(spec, per_group, pairs)
        tested += n
        significant += found
    return metrics, significant, tested


def _derived_columns(table: RunTable, prices: PriceList) -> dict[str, list[float | None]]:
    """The table's columns plus the ones metrics need that SQL does not give directly."""
    columns = dict(table.columns)
    n = len(table.run_ids)
    columns["finished"] = [1.0] * n
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
            columns[f"has.finding.{dimension}.{name}"] = [1.0 if v > 0 else 0.0 for v in values]
            if dimension == "kind":
                total = [t + v for t, v in zip(total, values, strict=True)]
    columns["findings_total"] = list(total)
    return columns


def _bootstrap_group(
    table: RunTable,
    columns: dict[str, list[float | None]],
    group: str,
    specs: list[MetricSpec],
    reference: str | None,
    resamples: int,
    seed: int,
) -> dict[str, Bootstrapped]:
    rows = table.rows_of(group)
    sample = Sample(
        {name: [values[i] for i in rows] for name, values in columns.items()},
        [table.tasks[i] for i in rows],
        resamples,
        # Each group draws from its own seeded stream: adding a group changes no other's.
        f"{seed}:{group}",
    )
    out: dict[str, Bootstrapped] = {}
    for spec in specs:
        if spec.key in _NO_REFERENCE_METRICS and (reference is None or group == reference):
            continue
        if spec.key == "cost_per_run_usd" and None in sample.columns["cost_usd"]:
            continue  # a partly priced group would report a cost that is too low
        out[spec.key] = bootstrap(spec.statistic, sample)
    return out


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
        unjudged = sum(columns["success"][i] is None for i in rows)
        if unjudged:
            notes.append(
                f"{group}: the success of {unjudged} of {len(rows)} runs is unknown (no answer "
                "was judged: the endpoint failed, or an imported log says nothing); task "
                "success leaves them out rather than count them as failures."
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

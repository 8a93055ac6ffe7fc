"""What a report shows, gathered from the database: the comparison and the timelines."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from analyzer.compare.build import build_comparison
from analyzer.compare.costs import PriceList
from analyzer.compare.model import Comparison
from analyzer.compare.selection import Selection
from analyzer.compare.stats import DEFAULT_RESAMPLES
from analyzer.report.runs import GroupTimelines, load_timelines
from analyzer.verify.model import Verification
from traces.store.database import Store

DEFAULT_RUNS_PER_GROUP = 10
"""Timelines drawn per group unless asked otherwise: enough to see a pattern, small file."""


@dataclass(frozen=True)
class Report:
    """Everything the page shows."""

    comparison: Comparison
    timelines: list[GroupTimelines]
    database: Store
    runs_per_group: int
    verification: Verification | None = None
    """A policy judged on the comparison (`--policy`), shown first."""


def build_report(
    conn: duckdb.DuckDBPyConnection,
    selection: Selection,
    *,
    database: Store,
    prices: PriceList,
    reference: str | None = None,
    runs_per_group: int = DEFAULT_RUNS_PER_GROUP,
    resamples: int = DEFAULT_RESAMPLES,
) -> Report:
    """Compare the selected runs and load the newest `runs_per_group` timelines of each group;
    a one-line TracesError when nothing matches (as `traces compare`)."""
    comparison = build_comparison(
        conn, selection, prices=prices, reference=reference, resamples=resamples
    )
    timelines = load_timelines(conn, selection, [g.name for g in comparison.groups], runs_per_group)
    return Report(comparison, timelines, database, runs_per_group)

"""`traces analyze [RUN…]`: run every check over recorded runs and store their findings.

Idempotent: a run's findings are replaced, so old traces benefit from new checks.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Annotated, Any

import duckdb
import typer

from analyzer.checks.parallel import Workers, plan, workers_for
from analyzer.checks.stored import FindingCounts
from analyzer.fail_on import check_fail_on_counts
from analyzer.options import DataPathOption, DbOption, FailOnOption, FormatOption, WideOption
from analyzer.output import OutputFormat, emit_rows
from analyzer.progress import progress_bar
from analyzer.queries import abbreviate_run_ids, resolve_run_id
from traces.errors import DatabaseError
from traces.store.database import (
    is_served,
    open_for_reading,
    open_for_writing,
    resolve_db_path,
)
from traces.store.inserts import json_list

if TYPE_CHECKING:
    from analyzer.checks.records import Finding
    from traces.store.database import Store


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("analyze")(analyze)


def analyze(
    runs: Annotated[
        list[str] | None,
        typer.Argument(help="Run ids, unique prefixes or `last` [default: every run]."),
    ] = None,
    wide: WideOption = False,
    db: DbOption = None,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
    fail_on: FailOnOption = None,
) -> None:
    """Check runs for failures and store the findings; prints counts per run."""
    path = resolve_db_path(db, data_path)
    if not path.exists():
        raise DatabaseError(f"{path}: no trace database here (record a run first, or pass --db)")
    ids, found = _in_workers(path, runs)
    with (open_for_reading if found is not None else open_for_writing)(path) as conn:
        if found is None:
            found = _analyze_with_progress(conn, ids)
        heads = dict.fromkeys(ids, (None, None))
        every = not runs  # then each id needs no testing (a third of the time)
        for run_id, provider, model in conn.execute(
            "SELECT id, provider, model FROM runs"
            + ("" if every else " WHERE id IN (SELECT unnest(from_json(?, '[\"VARCHAR\"]')))"),
            [] if every else [json_list(ids)],  # one value: a list costs DuckDB µs an id
        ).fetchall():
            if run_id in heads:  # a run recorded since the analysis began is not shown
                heads[run_id] = (provider, model)
        rows = []
        for run_id in ids:
            row = summarize(run_id, found.get(run_id, FindingCounts()))
            row["provider"], row["model"] = heads[run_id]
            rows.append(row)
        if fmt is OutputFormat.table and not wide:
            abbreviate_run_ids(conn, rows, "run")
    emit_rows(
        rows,
        fmt,
        columns=["run", "provider", "model", "findings", "errors", "warnings", "kinds"],
        keep=["run"],
        droppable=["warnings", "errors", "model", "provider"],
        wide=wide,
    )
    check_fail_on_counts(found, fail_on)


def _in_workers(
    path: Store, runs: list[str] | None
) -> tuple[list[str], dict[str, FindingCounts] | None]:
    """The runs to analyze (`runs` resolved, else every run) and, when worker processes
    analyzed and stored them, their findings counted (None: this process is to)."""
    with ExitStack() as started:
        pool: Workers | None = None
        with open_for_reading(path) as conn:
            # Resolve every reference before writing anything: a typo changes nothing.
            if runs:
                ids = list(dict.fromkeys(resolve_run_id(conn, ref) for ref in runs))
            else:
                ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id").fetchall()]
            # Worker processes read the file itself, which they cannot while another command
            # writes it (its server has it): then this process analyzes through the server.
            served = is_served(conn)
            if not runs and not served:
                # Every run: the workers, as many as the store's steps call for, load their
                # imports while the runs are planned.
                (steps,) = conn.execute("SELECT count(*) FROM step_rows").fetchone() or (0,)
                if workers_for(steps) > 1:
                    pool = started.enter_context(Workers(path, workers_for(steps)))
            workers = 1 if served else (pool.size if pool else None)
            split = plan(conn, ids, workers=workers, every=not runs)
        if split.workers == 1:
            return ids, None
        pool = pool or started.enter_context(Workers(path, split.workers))
        # The workers read the store while nothing writes it; they store everything in one
        # transaction at the end.
        with progress_bar("analyze", len(ids)) as advance:
            return ids, pool.analyze(split.chunks, on_chunk=advance)


def _analyze_with_progress(
    conn: duckdb.DuckDBPyConnection, ids: list[str]
) -> dict[str, FindingCounts]:
    """Each run's findings counted: the evidence is stored, and only counts are printed."""
    # The checks, imported only by the process that runs them (see `checks.stored`).
    from analyzer.checks.persist import analyze_runs, finding_counts

    counts: dict[str, FindingCounts] = {}

    def keep(run_id: str, findings: list[Finding]) -> None:
        counts[run_id] = finding_counts(findings)

    with progress_bar("analyze", len(ids)) as advance:
        analyze_runs(conn, ids, on_chunk=advance, on_findings=keep)
    return counts


def summarize(run_id: str, counts: FindingCounts) -> dict[str, Any]:
    """Counts of one run's findings: total, by severity, and by kind (most frequent first)."""
    # Plain dicts, not Counters: once per run of the store.
    severities: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for (severity, kind), n in counts.items():
        severities[severity] = severities.get(severity, 0) + n
        kinds[kind] = kinds.get(kind, 0) + n
    return {
        "run": run_id,
        "findings": sum(counts.values()),
        "errors": severities.get("error", 0),
        "warnings": severities.get("warning", 0),
        # Most frequent first, ties in the order counted (as `Counter.most_common`).
        "kinds": dict(sorted(kinds.items(), key=_count_first)),
    }


def _count_first(item: tuple[str, int]) -> int:
    return -item[1]

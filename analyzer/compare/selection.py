"""Which runs a comparison covers, and which group (column) each run falls in.

The selected runs go into a temporary table `compare_runs (run_id, grp, task)` once, so every
metric query joins a small table instead of repeating the filters; read-only connections may
create temporary tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb
from pydantic import BaseModel, Field

from analyzer.compare.group_by import GroupBy as GroupBy
from analyzer.queries import resolve_run_id
from traces.errors import TracesError

SELECTED = "compare_runs"
"""Name of the temporary table holding the selected runs."""


DEFAULT_ORIGINS = ("recorded", "imported", "replay")
"""Runs compared unless `--origin` says otherwise: what a user recorded, imported or replayed
to compare providers on (probes are fixed experiments, proxied runs someone else's work)."""


class Selection(BaseModel):
    """Filters over finished runs, and the grouping of the comparison."""

    providers: list[str] = Field(default_factory=list, description="Only these providers.")
    models: list[str] = Field(default_factory=list, description="Only these models.")
    tasks: list[str] = Field(default_factory=list, description="Only these tasks.")
    since: datetime | None = Field(default=None, description="Runs started at or after (UTC).")
    until: datetime | None = Field(default=None, description="Runs started before (UTC).")
    run_ids: list[str] = Field(default_factory=list, description="Only these runs (full ids).")
    origins: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ORIGINS),
        description="Only runs of these origins (ignored when run ids are given): probe runs "
        "are one-step experiments, left out unless asked for.",
    )
    by: GroupBy = Field(default=GroupBy.provider, description="What each column stands for.")

    def describe(self) -> str:
        """The filters in one line, for messages (`all runs` when there are none)."""
        parts = [
            *(f"provider={p}" for p in self.providers),
            *(f"model={m}" for m in self.models),
            *(f"task={t}" for t in self.tasks),
        ]
        if self.since:
            parts.append(f"since={self.since.isoformat(sep=' ')}")
        if self.until:
            parts.append(f"until={self.until.isoformat(sep=' ')}")
        if self.run_ids:
            parts.append(f"{len(self.run_ids)} run id(s)")
        return ", ".join(parts) or "all runs"


def selection_from_options(
    *,
    providers: list[str] | None,
    model: str | None,
    tasks: list[str] | None,
    since: str | None,
    until: str | None,
    origins: list[str] | None,
    by: GroupBy,
) -> Selection:
    """The selection `--provider`, `--model`, `--task`, `--since`, `--until`, `--origin`
    and `--by` describe (`compare` and `report` take the same filters)."""
    return Selection(
        providers=providers or [],
        models=[model] if model else [],
        tasks=tasks or [],
        since=parse_moment("--since", since),
        until=parse_moment("--until", until),
        origins=origins or list(DEFAULT_ORIGINS),
        by=by,
    )


def select_run_refs(conn: duckdb.DuckDBPyConnection, selection: Selection, refs: list[str]) -> None:
    """Narrow `selection` to the runs `--run` names (ids, prefixes or `last`), if any."""
    if refs:
        selection.run_ids = list(dict.fromkeys(resolve_run_id(conn, ref) for ref in refs))


def parse_moment(option: str, text: str | None) -> datetime | None:
    """An ISO date or date-time as naive UTC (how run start times are stored); a one-line
    error naming `option` when it is not one."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TracesError(
            f"{option} {text!r}: expected an ISO date or time such as 2025-11-24 or "
            "2025-11-24T09:30"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _group_expression(by: GroupBy) -> str:
    if by is GroupBy.model:
        return "r.model"
    if by is GroupBy.upstream:
        return "coalesce(r.provider || '/' || u.upstream, r.provider)"
    if by is GroupBy.day:  # started_at is UTC (naive); names sort in time order
        return "r.provider || ' ' || strftime(r.started_at, '%Y-%m-%d')"
    if by is GroupBy.week:
        return "r.provider || ' ' || strftime(r.started_at, '%G-W%V')"
    return "r.provider"


def select_runs(conn: duckdb.DuckDBPyConnection, selection: Selection) -> int:
    """Fill the temporary `compare_runs` table; return how many runs it holds.

    Only finished runs count: a run still being recorded has no outcome yet.
    """
    where = ["r.status <> 'running'"]
    params: list[Any] = []
    for column, values in (
        ("provider", selection.providers),
        ("model", selection.models),
        ("task", selection.tasks),
        ("id", selection.run_ids),
    ):
        if values:
            where.append(f"r.{column} IN (SELECT unnest(?::VARCHAR[]))")
            params.append(values)
    if selection.origins and not selection.run_ids:
        where.append("coalesce(r.origin, 'recorded') IN (SELECT unnest(?::VARCHAR[]))")
        params.append(selection.origins)
    if selection.since is not None:
        where.append("r.started_at >= ?")
        params.append(selection.since)
    if selection.until is not None:
        where.append("r.started_at < ?")
        params.append(selection.until)
    upstream_join = ""
    if selection.by is GroupBy.upstream:
        # One host per run: the one most of its steps named (a router may fall back mid-run).
        upstream_join = """
            LEFT JOIN (SELECT run_id, mode(upstream_provider) AS upstream FROM step_rows
                       WHERE upstream_provider IS NOT NULL GROUP BY run_id) u
                ON u.run_id = r.id"""
    conn.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {SELECTED} AS
        SELECT r.id AS run_id, {_group_expression(selection.by)} AS grp, r.task
        FROM runs r {upstream_join}
        WHERE {" AND ".join(where)}
        """,
        params,
    )
    row = conn.execute(f"SELECT count(*) FROM {SELECTED}").fetchone()
    return int(row[0]) if row else 0


def no_match_error(conn: duckdb.DuckDBPyConnection, selection: Selection) -> TracesError:
    """A one-line error for a selection that matched nothing, naming what the database has."""
    if selection.providers:
        known = [
            r[0] for r in conn.execute("SELECT DISTINCT provider FROM runs ORDER BY 1").fetchall()
        ]
        missing = [p for p in selection.providers if p not in known]
        if missing:
            return TracesError(
                f"no runs of provider {missing[0]!r} in this database "
                f"(providers here: {', '.join(known) or 'none'})"
            )
    if selection.tasks:
        known = [r[0] for r in conn.execute("SELECT DISTINCT task FROM runs ORDER BY 1").fetchall()]
        missing = [t for t in selection.tasks if t not in known]
        if missing:
            return TracesError(
                f"no runs of task {missing[0]!r} in this database "
                f"(tasks here: {', '.join(known) or 'none'})"
            )
    return TracesError(f"no finished runs match ({selection.describe()})")

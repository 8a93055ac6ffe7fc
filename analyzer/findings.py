"""Read queries behind `traces failures`: findings counted, and drilled down to steps."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from analyzer.cursor_rows import dict_rows


def _where(filters: dict[str, str | None]) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for column, value in filters.items():
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def stored_evidence(text: Any) -> Any:
    """A finding's stored evidence, decoded, without the check's bookkeeping
    (`check_version`), which tells old findings apart but means nothing to a reader."""
    value = json.loads(text) if isinstance(text, str) else text
    if isinstance(value, dict):
        value.pop("check_version", None)
    return value


def finding_counts(
    conn: duckdb.DuckDBPyConnection,
    *,
    provider: str | None = None,
    model: str | None = None,
    layer: str | None = None,
) -> list[dict[str, Any]]:
    """Findings by kind × provider × model: how many, in how many runs and steps."""
    where, params = _where({"r.provider": provider, "r.model": model, "f.layer": layer})
    return dict_rows(
        conn.execute(
            f"""
            SELECT f.kind, f.layer, max(CASE f.severity WHEN 'error' THEN 3
                   WHEN 'warning' THEN 2 ELSE 1 END) AS rank,
                   r.provider, r.model, count(*) AS findings,
                   count(DISTINCT f.run_id) AS runs,
                   (SELECT count(*) FROM runs r2 WHERE r2.provider = r.provider
                      AND r2.model = r.model) AS of_runs
            FROM findings f JOIN runs r ON r.id = f.run_id
            {where}
            GROUP BY f.kind, f.layer, r.provider, r.model
            ORDER BY findings DESC, f.kind, r.provider, r.model
            """,
            params,
        )
    )


def finding_details(
    conn: duckdb.DuckDBPyConnection,
    *,
    kind: str | None = None,
    run_id: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    layer: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Individual findings with their step and evidence, newest run first (`offset` of them
    skipped, in the query). `so_far` says when a finding is one of a run's findings so far
    (`up to step K`: the run was checked while it was recorded); null when they are final."""
    where, params = _where(
        {
            "f.kind": kind,
            "f.run_id": run_id,
            "r.provider": provider,
            "r.model": model,
            "f.layer": layer,
        }
    )
    if run_id is not None:  # the run's rows found by its key (`run_tables.of_run`)
        where += " AND f.run_key = (SELECT key FROM runs WHERE id = ?)"
        params.append(run_id)
    rows = dict_rows(
        conn.execute(
            f"""
            SELECT f.run_id AS run, f.step_idx AS step, f.kind, f.severity, f.layer,
                   f.confidence, r.provider, r.model, f.evidence,
                   CASE WHEN sf.run_id IS NOT NULL
                        THEN coalesce('up to step ' || sf.through_step, 'so far') END AS so_far
            FROM findings f JOIN runs r ON r.id = f.run_id
            LEFT JOIN findings_so_far sf ON sf.run_id = f.run_id
            {where}
            ORDER BY r.started_at DESC, f.run_id, f.step_idx NULLS FIRST, f.kind
            {"LIMIT " + str(int(limit)) if limit else ""}
            {"OFFSET " + str(int(offset)) if offset else ""}
            """,
            params,
        )
    )
    for row in rows:
        row["evidence"] = stored_evidence(row["evidence"]) or {}
    return rows


def findings_per_run(conn: duckdb.DuckDBPyConnection, run_ids: list[str]) -> dict[str, int]:
    """Number of findings of each of `run_ids` (runs without any are absent)."""
    if not run_ids:
        return {}
    rows = conn.execute(
        "SELECT run_id, count(*) FROM findings WHERE run_id IN (SELECT unnest(?)) GROUP BY 1",
        [run_ids],
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}

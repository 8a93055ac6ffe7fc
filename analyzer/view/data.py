"""Read queries only the viewer asks: the choices its filters offer, the same request
answered more than once, and the cheap fingerprint its pages poll to follow a recording."""

from __future__ import annotations

from typing import Any

import duckdb

from analyzer.cursor_rows import dict_rows
from traces.store.run_tables import of_run, of_runs

_RUNNING = "SELECT id FROM runs WHERE status = 'running'"
"""The runs being recorded (their steps are counted live)."""

FILTER_COLUMNS = ("task", "provider", "model", "origin")


def filter_choices(conn: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """The values each run filter can take (those present in the store), and the finding
    kinds found so far."""
    choices: dict[str, list[str]] = {}
    for column in FILTER_COLUMNS:
        choices[column] = [
            str(r[0])
            for r in conn.execute(
                f"SELECT DISTINCT {column} FROM runs WHERE {column} IS NOT NULL ORDER BY 1"
            ).fetchall()
        ]
    choices["kind"] = [
        str(r[0]) for r in conn.execute("SELECT DISTINCT kind FROM findings ORDER BY 1").fetchall()
    ]
    return choices


def live_version(conn: duckdb.DuckDBPyConnection, run_id: str | None) -> str:
    """A fingerprint of what the open pages show that changes when a run, a step or a
    finding is added or a run ends (counts and latest times, each read in O(1) or over the
    running runs' steps only)."""
    parts: list[Any] = list(
        conn.execute(
            "SELECT count(*), max(started_at), max(ended_at), count(*) FILTER "
            "(status = 'running') FROM runs"
        ).fetchone()
        or ()
    )
    parts += list(conn.execute("SELECT count(*) FROM findings").fetchone() or ())
    parts += list(
        conn.execute(f"SELECT count(*) FROM step_rows WHERE {of_runs(_RUNNING)}").fetchone() or ()
    )
    if run_id is not None:
        parts += list(
            conn.execute(
                f"SELECT status, ended_at, (SELECT count(*) FROM step_rows WHERE {of_run('$1')}) "
                "FROM runs WHERE id = $1",
                [run_id],
            ).fetchone()
            or ()
        )
    return "|".join("" if p is None else str(p) for p in parts)


def repeated_requests(
    conn: duckdb.DuckDBPyConnection, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Requests (`request_hash`) answered more than once, most answers first: by how many
    steps, providers and models; and how many such requests there are."""
    groups = """
        SELECT s.request_hash, count(*) AS answers,
               count(DISTINCT r.provider) AS providers, count(DISTINCT r.model) AS models,
               list(DISTINCT r.provider ORDER BY r.provider) AS provider_names,
               min(r.task) AS task, min(s.started_at) AS first_at
        FROM step_rows s JOIN runs r ON r.id = s.run_id
        WHERE s.request_hash IS NOT NULL
        GROUP BY s.request_hash HAVING count(*) > 1
    """
    # The total as a window over the groups: one aggregation of the steps, not two.
    rows = dict_rows(
        conn.execute(
            f"""
            SELECT *, count(*) OVER () AS total FROM ({groups})
            ORDER BY providers DESC, answers DESC, request_hash LIMIT ? OFFSET ?
            """,
            [limit, offset],
        )
    )
    total = int(rows[0]["total"]) if rows else 0
    if not rows and offset:  # a page past the end still says how many there are
        counted = conn.execute(f"SELECT count(*) FROM ({groups})").fetchone()
        total = int(counted[0]) if counted else 0
    return rows, total


def answers_to(
    conn: duckdb.DuckDBPyConnection, request_hash: str, *, limit: int
) -> list[dict[str, Any]]:
    """The steps that answered one request, oldest first, with their calls: what a side by
    side shows."""
    steps = dict_rows(
        conn.execute(
            """
            SELECT s.run_id, s.idx, r.provider, r.model, s.upstream_provider, s.started_at,
                   s.latency_ms, s.finish_reason, s.finish_reason_raw, s.reasoning,
                   s.reasoning_source, s.content, s.prompt_tokens, s.completion_tokens,
                   s.reasoning_tokens, s.error_kind, s.error_message
            FROM steps s JOIN runs r ON r.id = s.run_id
            WHERE s.request_hash = ?
            ORDER BY s.started_at, s.run_id, s.idx LIMIT ?
            """,
            [request_hash, limit],
        )
    )
    if not steps:
        return []
    # By the runs found, not by the hash again: that would scan every step a second time.
    calls = conn.execute(
        f"""
        SELECT c.run_id, c.step_idx, c.name, c.arguments_raw, c.json_valid, c.schema_valid
        FROM tool_calls c WHERE {of_runs("SELECT unnest($1::VARCHAR[])", "c")}
        ORDER BY c.call_idx
        """,
        [sorted({s["run_id"] for s in steps})],
    ).fetchall()
    by_step = {(s["run_id"], s["idx"]): s for s in steps}
    for step in steps:
        step["calls"] = []
    for run_id, idx, name, arguments, json_valid, schema_valid in calls:
        answer = by_step.get((run_id, idx))
        if answer is not None:
            answer["calls"].append(
                {
                    "name": name,
                    "arguments": arguments,
                    "json_valid": json_valid,
                    "schema_valid": schema_valid,
                }
            )
    return steps

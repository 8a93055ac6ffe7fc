"""Read queries behind `runs`, `show` and `steps`."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from analyzer.cursor_rows import dict_rows
from analyzer.findings import stored_evidence
from analyzer.run_end import ended_by
from analyzer.stream_shape import stream_shape
from traces.errors import TracesError
from traces.store.inserts import json_list
from traces.store.run_tables import of_run, of_runs
from traces.store.tables import stored_request_id, stored_usage
from traces.store.writer_process import pid_alive
from traces.token_totals import TOKEN_COLUMNS, known_sum, totals_by_run

RUN_COLUMNS = [
    "id",
    "task",
    "provider",
    "model",
    "status",
    "termination",
    "success",
    "steps",
    "tool_calls",
    "tool_errors",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "reasoning_tokens_estimated",
    "ended_by",
    "ended_by_kind",
    "started_at",
    "duration_s",
    "error",
    "findings",
    "failures",
    "findings_by_kind",
    "findings_so_far",
    "findings_through_step",
    "origin",
    "conversation",
    "resumptions",
    "retry_of",
    "sample",
]


_STEP_TOKENS = ", ".join(f"{known_sum(c)} AS {c}" for c in TOKEN_COLUMNS)
"""Token totals of a run still being recorded, from the steps it has so far."""

_ESTIMATED = "reasoning_tokens_source = 'estimated' AND error_kind IS NULL"
"""Answered steps whose reasoning tokens are the client's estimate from the text (the host
reported none): a run total that adds one is marked estimated, as `show` marks the step."""


def _live_tokens(live: str) -> str:
    """A finished run's stored token totals (NULL where unknown), a running one's from
    `live`, the alias of its totals summed from the steps recorded so far."""
    return ", ".join(
        f"CASE WHEN r.status = 'running' THEN {live}.{c} ELSE r.{c} END AS {c}"
        for c in TOKEN_COLUMNS
    )


def _effective_status(row: dict[str, Any]) -> None:
    # A read-only reader cannot update the file, but it can still tell the truth: a run
    # whose recorder process is gone was interrupted, whatever the row says.
    if row["status"] == "running":
        alive = row.get("recorder_host") != socket.gethostname() or pid_alive(
            int(row["recorder_pid"])
        )
        if not alive:
            row["status"] = "interrupted"
            row["termination"] = "interrupted"
            row["error"] = "recorder process ended before the run finished"


def _run_filters(**equal: str | None) -> tuple[list[str], list[Any]]:
    """WHERE conditions (on `runs r`) and their parameters for the columns given a value."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in equal.items():
        if value is not None:
            where.append(f"r.{column} = ?")
            params.append(value)
    return where, params


@dataclass(frozen=True)
class RunSearch:
    """What the viewer narrows a run listing by, beyond the columns `traces runs` filters:
    findings of one kind, a start-time range, and the runs a text search found
    (`analyzer.view.search`)."""

    kind: str | None = None
    """Only runs with at least one finding of this kind."""
    since: datetime | None = None
    """Only runs started at or after this time (UTC)."""
    until: datetime | None = None
    """Only runs started before this time (UTC)."""
    ids: tuple[str, ...] | None = None
    """Only these runs (the viewer searches text a part of the store at a time)."""

    def conditions(self) -> tuple[list[str], list[Any]]:
        """WHERE conditions on `runs r` and their parameters."""
        where: list[str] = []
        params: list[Any] = []
        if self.kind:
            # The run's own counts by kind, which the analysis writes in the transaction
            # that writes its findings: a million findings are not read for a listing.
            where.append("(r.findings_by_kind ->> ?) IS NOT NULL")
            params.append(self.kind)
        if self.since is not None:
            where.append("r.started_at >= ?")
            params.append(self.since)
        if self.until is not None:
            where.append("r.started_at < ?")
            params.append(self.until)
        if self.ids is not None:
            where.append("r.id IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(self.ids))
        return where, params


RUN_ORDERS: dict[str, str] = {
    "started_at": "r.started_at",
    "task": "r.task",
    "provider": "r.provider",
    "model": "r.model",
    "status": "r.status",
    "steps": "r.steps",
    "tool_calls": "r.tool_calls",
    "duration_s": "epoch(r.ended_at - r.started_at)",
}
"""The orders a run listing takes (`list_runs(order=…)`): name -> expression on `runs r`.
Stored columns only, so the order and the page are both decided in the query."""


def count_runs(
    conn: duckdb.DuckDBPyConnection,
    *,
    task: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    status: str | None = None,
    origin: str | None = None,
    search: RunSearch | None = None,
) -> int:
    """How many runs `list_runs` would list without a limit (counted in the query; only
    runs stored as running are read, to tell which of them were interrupted)."""
    where, params = _run_filters(task=task, provider=provider, model=model, origin=origin)
    if search is not None:
        more, more_params = search.conditions()
        where += more
        params += more_params
    clause = " AND ".join(where) or "true"
    if status not in ("running", "interrupted"):
        if status is not None:
            clause += " AND r.status = ?"
            params.append(status)
        counted = conn.execute(f"SELECT count(*) FROM runs r WHERE {clause}", params).fetchone()
        return int(counted[0]) if counted else 0
    running = dict_rows(
        conn.execute(
            f"SELECT status, recorder_pid, recorder_host FROM runs r "
            f"WHERE {clause} AND r.status = 'running'",
            params,
        )
    )
    for run in running:
        _effective_status(run)
    dead = sum(1 for run in running if run["status"] == "interrupted")
    if status == "running":
        return len(running) - dead
    counted = conn.execute(
        f"SELECT count(*) FROM runs r WHERE {clause} AND r.status = 'interrupted'", params
    ).fetchone()
    return (int(counted[0]) if counted else 0) + dead


def list_runs(
    conn: duckdb.DuckDBPyConnection,
    *,
    task: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    status: str | None = None,
    origin: str | None = None,
    limit: int | None = None,
    search: RunSearch | None = None,
    order: str = "started_at",
    descending: bool = True,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Runs, newest first (or by `order`, a key of `RUN_ORDERS`), with live step counts for
    runs still being recorded.

    Filters, the order, the offset and the limit apply in the query, and only the listed
    runs' findings are counted: a listing costs the runs it shows, not the store. (A run
    stored as running whose recorder is gone is shown as interrupted, which only this
    process can tell: a listing by status fetches that many more rows than its limit.)"""
    where, params = _run_filters(task=task, provider=provider, model=model, origin=origin)
    if search is not None:
        more, more_params = search.conditions()
        where += more
        params += more_params
    direction = "DESC" if descending else "ASC"
    # The id last: a total order, so pages never repeat or skip a run.
    ordering = f"{RUN_ORDERS[order]} {direction} NULLS LAST, r.id {direction}"
    rows_wanted = limit
    if status is not None:
        # Stored `running` rows may read as interrupted: fetch them too, then filter.
        stored = ["running", "interrupted"] if status in ("running", "interrupted") else [status]
        where.append("r.status IN (SELECT unnest(?::VARCHAR[]))")
        params.append(stored)
        if limit is not None and status == "interrupted":
            counted = conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()
            rows_wanted = limit + (int(counted[0]) if counted else 0)
    page = ""
    if rows_wanted is not None:
        page = "LIMIT ?"
        params.append(rows_wanted)
    if offset:
        page += " OFFSET ?"
        params.append(offset)
    sql = f"""
        WITH page AS (
            SELECT * FROM runs r
            {"WHERE " + " AND ".join(where) if where else ""}
            ORDER BY {ordering}
            {page}
        )
        SELECT r.id, r.task, r.provider, r.model, r.status, r.termination, r.success,
               CASE WHEN r.status = 'running' THEN coalesce(s.n, 0) ELSE r.steps END AS steps,
               CASE WHEN r.status = 'running' THEN coalesce(c.n, 0) ELSE r.tool_calls END
                   AS tool_calls,
               r.tool_errors, {_live_tokens("s")},
               r.started_at,
               round(epoch(coalesce(r.ended_at, s.last_at) - r.started_at), 3) AS duration_s,
               r.error, r.recorder_pid, r.recorder_host, coalesce(fc.n, 0) AS findings,
               r.failure_summary AS failures, r.findings_by_kind,
               sf.run_id IS NOT NULL AS findings_so_far,
               sf.through_step AS findings_through_step, r.origin, r.conversation,
               coalesce(r.resumptions, 0) AS resumptions, r.retry_of, r.sample,
               est.run_id IS NOT NULL AS reasoning_tokens_estimated,
               e.ended_by, e.ended_by_kind
        FROM page r
        -- Live counts only for unfinished runs: finished ones carry their totals, and
        -- scanning millions of steps for every listing would not scale.
        LEFT JOIN (SELECT run_id, count(*) AS n, max(started_at) AS last_at, {_STEP_TOKENS}
                   FROM step_rows WHERE run_id IN (SELECT id FROM page WHERE status = 'running')
                   GROUP BY run_id) s ON s.run_id = r.id
        LEFT JOIN (SELECT run_id, count(*) AS n
                   FROM tool_calls WHERE run_id IN (SELECT id FROM page WHERE status = 'running')
                   GROUP BY run_id) c ON c.run_id = r.id
        LEFT JOIN (SELECT run_id, count(*) AS n FROM findings
                   WHERE run_id IN (SELECT id FROM page) GROUP BY run_id) fc
            ON fc.run_id = r.id
        -- A run checked while it was running (`analyzer.checks.persist`): its findings so far.
        LEFT JOIN findings_so_far sf ON sf.run_id = r.id
        LEFT JOIN (SELECT DISTINCT run_id FROM step_rows
                   WHERE {of_runs("SELECT id FROM page")} AND {_ESTIMATED}) est
            ON est.run_id = r.id
        LEFT JOIN ({ended_by("SELECT id FROM page")}) e ON e.run_id = r.id
        ORDER BY {ordering}
    """
    rows = dict_rows(conn.execute(sql, params))
    for row in rows:
        _effective_status(row)
        row["findings_by_kind"] = _loads(row["findings_by_kind"])
        # Marked only where a total adds an estimate: unknown stays unknown, unmarked.
        row["reasoning_tokens_estimated"] = bool(
            row["reasoning_tokens_estimated"] and row["reasoning_tokens"] is not None
        )
    if status is not None:
        rows = [r for r in rows if r["status"] == status]
    if limit is not None:
        rows = rows[:limit]
    return [{k: r[k] for k in RUN_COLUMNS} for r in rows]


def resolve_run_id(conn: duckdb.DuckDBPyConnection, ref: str) -> str:
    """A full run id from an id, a unique prefix, or `last`."""
    if ref == "last":
        row = conn.execute(
            "SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise TracesError("no runs recorded yet")
        return str(row[0])
    matches = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM runs WHERE starts_with(id, ?) ORDER BY id LIMIT 3", [ref]
        ).fetchall()
    ]
    if not matches:
        raise TracesError(f"no run with id {ref!r} (see `traces runs`)")
    if len(matches) > 1 and ref not in matches:
        raise TracesError(f"run id prefix {ref!r} is ambiguous: {', '.join(matches[:2])}, …")
    return ref if ref in matches else str(matches[0])


SHORT_ID_MIN = 8
"""Abbreviated run ids are at least this long, as git's are at least 7."""


def short_run_ids(conn: duckdb.DuckDBPyConnection, ids: list[str]) -> dict[str, str]:
    """The shortest prefix of each id that no other run in the store shares (at least
    `SHORT_ID_MIN` characters), as git abbreviates commits; `resolve_run_id` takes it back.

    In id order, the ids sharing the longest prefix with an id are its neighbours, so only
    those are compared; DuckDB finds them without sending every id to Python.
    """
    if not ids:
        return {}
    rows = conn.execute(
        """
        SELECT id, prev, next FROM (
            SELECT id, lag(id) OVER w AS prev, lead(id) OVER w AS next
            FROM runs WINDOW w AS (ORDER BY id)
        ) WHERE id IN (SELECT unnest(from_json(?, '["VARCHAR"]')))
        """,
        [json_list(list(dict.fromkeys(ids)))],  # one value: a list costs µs an id to bind
    ).fetchall()
    short = {run_id: run_id for run_id in ids}
    for run_id, *neighbours in rows:
        shared = max(
            (_common_prefix(run_id, other) for other in neighbours if other is not None),
            default=0,
        )
        short[run_id] = run_id[: max(shared + 1, SHORT_ID_MIN)]
    return short


def _common_prefix(a: str, b: str) -> int:
    """The length of the prefix `a` and `b` share: found by halving, each probe one slice
    comparison in C (a table of every run of a large store asks this of each id twice)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def abbreviate_run_ids(
    conn: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]], column: str
) -> None:
    """Replace the run ids in `rows[…][column]` by their shortest unique prefixes (tables)."""
    short = short_run_ids(conn, [str(r[column]) for r in rows if r.get(column) is not None])
    for row in rows:
        if row.get(column) is not None:
            row[column] = short[str(row[column])]


def so_far_label(row: dict[str, Any]) -> str | None:
    """How to call a run's findings when they are partial (`findings_so_far`): "so far, up
    to step K" (checked while the run was recorded, through its step K); None when final."""
    if not row.get("findings_so_far"):
        return None
    step = row.get("findings_through_step")
    return "so far" if step is None else f"so far, up to step {step}"


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def run_detail(
    conn: duckdb.DuckDBPyConnection, run_id: str, *, only_step: int | None = None
) -> dict[str, Any]:
    """One run with its timeline: steps, their tool calls and results, and findings.

    `only_step` reads that step alone (with its calls, results and findings; the run's own
    findings and, for a running run, its step count are then left out): a step's page of a
    300-step run costs one step."""
    # The filter is a parameter either way: NULL keeps every step.
    one = "AND (?::INTEGER IS NULL OR {column} = ?)"
    run = dict_rows(
        conn.execute(
            f"""
            SELECT r.* REPLACE ({_live_tokens("t")}),
                   sf.run_id IS NOT NULL AS findings_so_far,
                   sf.through_step AS findings_through_step,
                   est.n AS estimated_steps,
                   e.ended_by, e.ended_by_kind
            FROM runs r
            LEFT JOIN ({totals_by_run(of_run())}) t ON t.run_id = r.id
            LEFT JOIN findings_so_far sf ON sf.run_id = r.id
            LEFT JOIN (SELECT count(*) AS n FROM step_rows WHERE {of_run()} AND {_ESTIMATED}) est
                ON TRUE
            LEFT JOIN ({ended_by("SELECT ?::VARCHAR")}) e ON e.run_id = r.id
            WHERE r.id = ?
            """,
            [run_id] * 7,
        )
    )[0]
    _effective_status(run)
    run["reasoning_tokens_estimated"] = (
        run["reasoning_tokens"] is not None and (run.pop("estimated_steps") or 0) > 0
    )
    run["settings"] = _loads(run["settings"])
    steps = dict_rows(
        conn.execute(
            f"""
            SELECT idx AS index, started_at, latency_ms, ttft_reasoning_ms, ttft_content_ms,
                   ttft_tool_call_ms, streamed, http_status, finish_reason, finish_reason_raw,
                   reasoning, reasoning_source, content, prompt_tokens, completion_tokens,
                   reasoning_tokens, reasoning_tokens_source, cached_tokens, error_kind,
                   error_message, retries, anomalies, stream_events, resumption
            FROM steps WHERE run_key = ? AND run_id = ? {one.format(column="idx")} ORDER BY idx
            """,
            # The run's key as a value: through the view `steps` (migration 17), a key
            # looked up by a subquery (`of_run`) no longer prunes the scan of its rows.
            [run["key"], run_id, only_step, only_step],
        )
    )
    calls = dict_rows(
        conn.execute(
            "SELECT step_idx, call_idx, id, name, arguments_raw, arguments, json_valid, "
            "schema_valid, schema_error, id_format, arguments_type "
            f"FROM tool_calls WHERE {of_run()} {one.format(column='step_idx')} "
            "ORDER BY step_idx, call_idx",
            [run_id, run_id, only_step, only_step],
        )
    )
    results = dict_rows(
        conn.execute(
            "SELECT step_idx, call_idx, tool_call_id, name, output, error, error_kind, "
            "duration_ms, structured "
            f"FROM tool_results WHERE {of_run()} {one.format(column='step_idx')} "
            "ORDER BY step_idx, call_idx",
            [run_id, run_id, only_step, only_step],
        )
    )
    findings = dict_rows(
        conn.execute(
            "SELECT step_idx, kind, severity, layer, confidence, evidence FROM findings "
            f"WHERE {of_run()} {one.format(column='step_idx')} "
            "ORDER BY step_idx NULLS FIRST, kind",
            [run_id, run_id, only_step, only_step],
        )
    )
    by_step: dict[int, dict[str, Any]] = {}
    for step in steps:
        step["usage"] = {
            "prompt_tokens": step.pop("prompt_tokens"),
            "completion_tokens": step.pop("completion_tokens"),
            "reasoning_tokens": step.pop("reasoning_tokens"),
            "reasoning_tokens_source": step.pop("reasoning_tokens_source"),
            "cached_tokens": step.pop("cached_tokens"),
        }
        step["anomalies"] = _loads(step["anomalies"]) or []
        # The distribution, not the raw lines: a step's stream holds thousands of them.
        step["stream"] = stream_shape(step.pop("stream_events"))
        step["tool_calls"], step["tool_results"], step["findings"] = [], [], []
        by_step[step["index"]] = step
    for call in calls:
        step_idx = call.pop("step_idx")
        call["arguments"] = _loads(call["arguments"])
        if step_idx in by_step:
            by_step[step_idx]["tool_calls"].append(call)
    for result in results:
        step_idx = result.pop("step_idx")
        result["structured"] = _loads(result["structured"])
        if step_idx in by_step:
            by_step[step_idx]["tool_results"].append(result)
    run_findings: list[dict[str, Any]] = []
    for finding in findings:
        finding["evidence"] = stored_evidence(finding["evidence"])
        target = by_step.get(finding["step_idx"]) if finding["step_idx"] is not None else None
        (target["findings"] if target else run_findings).append(finding)
    run.pop("recorder_host", None)
    run["findings"] = run_findings
    run["steps_count"] = run.pop("steps") if run["status"] != "running" else len(steps)
    run["steps"] = steps
    return run


def step_distribution(conn: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The `step_counts` view: step-count distribution by task, provider and model."""
    return dict_rows(conn.execute("SELECT * FROM step_counts ORDER BY task, provider, model"))


def step_histogram(conn: duckdb.DuckDBPyConnection, buckets: int = 10) -> list[dict[str, Any]]:
    """Runs per step-count bucket for each (task, provider, model)."""
    return dict_rows(
        conn.execute(
            """
            WITH finished AS (SELECT task, provider, model, steps FROM runs
                              WHERE status <> 'running'),
                 bounds AS (SELECT task, provider, model, min(steps) AS lo,
                                   greatest(max(steps) - min(steps), 1) AS span
                            FROM finished GROUP BY ALL)
            SELECT f.task, f.provider, f.model,
                   least(floor((f.steps - b.lo) * ? / b.span), ? - 1)::INT AS bucket,
                   min(f.steps) AS from_steps, max(f.steps) AS to_steps, count(*) AS runs
            FROM finished f JOIN bounds b USING (task, provider, model)
            GROUP BY ALL ORDER BY f.task, f.provider, f.model, bucket
            """,
            [buckets, buckets],
        )
    )


def step_exchange(conn: duckdb.DuckDBPyConnection, run_id: str, idx: int) -> dict[str, Any] | None:
    """One step's exchange as it went over the wire: the request body exactly as sent
    (its parameters with the messages rebuilt by `request_messages(run_id, idx)`, in the
    order the client sends them), and the raw answer: the body, or every SSE line with its
    arrival time; the status, kept headers, usage block and failed attempts. None when the
    run has no such step."""
    rows = dict_rows(
        conn.execute(
            f"""
            SELECT http_status, {stored_request_id("step_rows")} AS request_id,
                   response_headers, request_params, request_message_count, request_hash,
                   response_body, stream_events, {stored_usage("step_rows")} AS usage_raw,
                   finish_reason_raw, error_status, error_body, retry_errors, upstream_provider
            FROM step_rows WHERE {of_run()} AND idx = ?
            """,
            [run_id, run_id, idx],
        )
    )
    if not rows:
        return None
    step = rows[0]
    messages = [
        json.loads(body)
        for (body,) in conn.execute(
            "SELECT body FROM request_messages(?, ?)", [run_id, idx]
        ).fetchall()
    ]
    params = _loads(step.pop("request_params")) or {}
    # The SDK sends `messages` first, then the other fields as given.
    step["request"] = {"messages": messages, **params}
    step["messages_missing"] = (step["request_message_count"] or 0) - len(messages)
    for name in ("response_headers", "usage_raw", "retry_errors"):
        step[name] = _loads(step[name])
    events = _loads(step.pop("stream_events"))
    step["stream_lines"] = [
        {"t_ms": e[0] if isinstance(e[0], int | float) else None, "line": str(e[1])}
        for e in events or []
        if isinstance(e, list) and len(e) == 2
    ]
    return step


def neighbour_steps(
    conn: duckdb.DuckDBPyConnection, run_id: str, idx: int
) -> tuple[int | None, int | None]:
    """The run's step before `idx` and the one after (None at either end)."""
    row = conn.execute(
        "SELECT max(idx) FILTER (WHERE idx < $2), min(idx) FILTER (WHERE idx > $2) "
        f"FROM step_rows WHERE {of_run('$1')}",
        [run_id, idx],
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)

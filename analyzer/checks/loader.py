"""Reading one run from the store into the plain records the checks take."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from analyzer.checks.records import Call, Result, Run, Step


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _rows(conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


_STEP_SQL = """
    SELECT idx, finish_reason, finish_reason_raw, content, reasoning, reasoning_source,
           prompt_tokens, completion_tokens, reasoning_tokens, reasoning_tokens_source,
           cached_tokens, total_tokens, streamed, http_status, error_kind, error_status,
           error_message, error_body, retry_errors, anomalies, request_params
    FROM steps WHERE run_id = ? ORDER BY idx
"""
_CALL_SQL = """
    SELECT step_idx, call_idx, id, id_format, name, arguments_raw, arguments_type, arguments,
           json_valid, schema_valid, schema_error
    FROM tool_calls WHERE run_id = ? ORDER BY step_idx, call_idx
"""
_RESULT_SQL = """
    SELECT step_idx, call_idx, tool_call_id, name, output, error
    FROM tool_results WHERE run_id = ? ORDER BY step_idx, call_idx
"""


def load_run(conn: duckdb.DuckDBPyConnection, run_id: str) -> Run:
    """The run `run_id` with every step, call and result; KeyError when it does not exist."""
    head = _rows(
        conn, "SELECT id, provider, model, settings, termination FROM runs WHERE id = ?", [run_id]
    )
    if not head:
        raise KeyError(run_id)
    settings = _json(head[0]["settings"]) or {}
    calls: dict[int, list[Call]] = {}
    for row in _rows(conn, _CALL_SQL, [run_id]):
        calls.setdefault(row["step_idx"], []).append(
            Call(
                index=row["call_idx"],
                id=row["id"],
                id_format=row["id_format"],
                name=row["name"],
                arguments_raw=row["arguments_raw"],
                arguments_type=row["arguments_type"],
                arguments=_json(row["arguments"]),
                json_valid=bool(row["json_valid"]),
                schema_valid=row["schema_valid"],
                schema_error=row["schema_error"],
            )
        )
    results: dict[int, list[Result]] = {}
    for row in _rows(conn, _RESULT_SQL, [run_id]):
        results.setdefault(row["step_idx"], []).append(
            Result(
                index=row["call_idx"],
                tool_call_id=row["tool_call_id"],
                name=row["name"],
                output=row["output"],
                error=row["error"],
            )
        )
    steps = []
    for row in _rows(conn, _STEP_SQL, [run_id]):
        index = row.pop("idx")
        for name in ("retry_errors", "anomalies"):
            row[name] = tuple(_json(row[name]) or ())
        row["request_params"] = _json(row["request_params"]) or {}
        steps.append(
            Step(
                index=index,
                calls=tuple(calls.get(index, ())),
                results=tuple(results.get(index, ())),
                **row,
            )
        )
    dialect = settings.get("dialect") if isinstance(settings, dict) else None
    return Run(
        id=head[0]["id"],
        provider=head[0]["provider"],
        model=head[0]["model"],
        dialect=dialect if isinstance(dialect, str) else None,
        termination=head[0]["termination"],
        steps=tuple(steps),
    )

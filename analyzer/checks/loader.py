"""Reading runs from the store into the plain records the checks take.

`load_runs` reads a whole batch with one query per table, so analyzing 100k imported runs
costs a few dozen queries rather than a few per run; `load_run` is the single-run case.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import duckdb

from analyzer.checks.records import Call, Result, Run, Step
from analyzer.cursor_rows import dict_rows


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _rows(conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    return dict_rows(conn.execute(sql, params))


# `IN (SELECT unnest(?))`: the batch travels as one list parameter and DuckDB turns the
# membership test into a hash semi-join, whatever the batch size.
_BATCH = "IN (SELECT unnest(?::VARCHAR[]))"

_RUN_SQL = f"SELECT id, provider, model, settings, termination FROM runs WHERE id {_BATCH}"
_STEP_SQL = f"""
    SELECT run_id, idx, finish_reason, finish_reason_raw, content, reasoning, reasoning_source,
           prompt_tokens, completion_tokens, reasoning_tokens, reasoning_tokens_source,
           cached_tokens, total_tokens, streamed, http_status, error_kind, error_status,
           error_message, error_body, retry_errors, anomalies, request_params,
           request_message_count
    FROM steps WHERE run_id {_BATCH} ORDER BY run_id, idx
"""
_CALL_SQL = f"""
    SELECT run_id, step_idx, call_idx, id, id_format, name, arguments_raw, arguments_type,
           arguments, json_valid, schema_valid, schema_error
    FROM tool_calls WHERE run_id {_BATCH} ORDER BY run_id, step_idx, call_idx
"""
_RESULT_SQL = f"""
    SELECT run_id, step_idx, call_idx, tool_call_id, name, output, error, error_kind
    FROM tool_results WHERE run_id {_BATCH} ORDER BY run_id, step_idx, call_idx
"""
_POSITION_SQL = f"""
    SELECT run_id, step_idx, position, hash
    FROM step_messages WHERE run_id {_BATCH} ORDER BY run_id, step_idx, position
"""
_MESSAGE_SQL = f"""
    SELECT hash, body FROM messages
    WHERE hash IN (SELECT hash FROM step_messages WHERE run_id {_BATCH})
"""

StepKey = tuple[str, int]


def _calls(conn: duckdb.DuckDBPyConnection, ids: list[str]) -> dict[StepKey, list[Call]]:
    calls: dict[StepKey, list[Call]] = {}
    for row in _rows(conn, _CALL_SQL, [ids]):
        calls.setdefault((row["run_id"], row["step_idx"]), []).append(
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
    return calls


def _results(conn: duckdb.DuckDBPyConnection, ids: list[str]) -> dict[StepKey, list[Result]]:
    results: dict[StepKey, list[Result]] = {}
    for row in _rows(conn, _RESULT_SQL, [ids]):
        results.setdefault((row["run_id"], row["step_idx"]), []).append(
            Result(
                index=row["call_idx"],
                tool_call_id=row["tool_call_id"],
                name=row["name"],
                output=row["output"],
                error=row["error"],
                error_kind=row["error_kind"],
            )
        )
    return results


def _positions(
    conn: duckdb.DuckDBPyConnection, ids: list[str]
) -> dict[StepKey, list[tuple[int, dict[str, Any]]]]:
    """(position, message) pairs each step stored, messages decoded once per distinct hash:
    a message repeated across steps or runs is one shared dict."""
    bodies = {h: json.loads(body) for h, body in conn.execute(_MESSAGE_SQL, [ids]).fetchall()}
    stored: dict[StepKey, list[tuple[int, dict[str, Any]]]] = {}
    for run_id, step_idx, position, digest in conn.execute(_POSITION_SQL, [ids]).fetchall():
        body = bodies.get(digest)
        if body is not None:
            stored.setdefault((run_id, step_idx), []).append((position, body))
    return stored


class _Requests:
    """Rebuilds each step's request progressively, with the semantics of the SQL macro
    `request_messages(run_id, idx)`: every position takes the message the latest step up to
    this one stored there, cut at the step's `request_message_count`."""

    def __init__(self) -> None:
        self.latest: list[dict[str, Any] | None] = []

    def request(
        self, stored: list[tuple[int, dict[str, Any]]], count: int
    ) -> tuple[dict[str, Any], ...]:
        latest = self.latest
        for position, message in stored:
            if position >= len(latest):
                latest.extend([None] * (position + 1 - len(latest)))
            latest[position] = message
        window = latest[:count]
        if None in window:  # a position no step stored: left out, as the macro's join does
            return tuple(m for m in window if m is not None)
        return tuple(cast(list[dict[str, Any]], window))


def load_runs(conn: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> list[Run]:
    """The runs `run_ids` (in that order) with every step, call, result and request message.

    One query per table for the whole batch; ids that do not exist are left out.
    """
    ids = list(dict.fromkeys(run_ids))
    if not ids:
        return []
    heads = {row["id"]: row for row in _rows(conn, _RUN_SQL, [ids])}
    calls = _calls(conn, ids)
    results = _results(conn, ids)
    positions = _positions(conn, ids)
    steps: dict[str, list[Step]] = {}
    requests: dict[str, _Requests] = {}
    # Every step of a run (and every run of a task) repeats its request parameters, tools
    # included: decode each distinct text once and share it (checks never mutate it).
    params: dict[str, dict[str, Any]] = {}
    for row in _rows(conn, _STEP_SQL, [ids]):
        run_id, index = row.pop("run_id"), row.pop("idx")
        count = row.pop("request_message_count")
        key = (run_id, index)
        for name in ("retry_errors", "anomalies"):
            row[name] = tuple(_json(row[name]) or ())
        text = row["request_params"]
        if isinstance(text, str):
            decoded = params.get(text)
            if decoded is None:
                decoded = params[text] = json.loads(text) or {}
            row["request_params"] = decoded
        else:
            row["request_params"] = text or {}
        builder = requests.setdefault(run_id, _Requests())
        steps.setdefault(run_id, []).append(
            Step(
                index=index,
                calls=tuple(calls.get(key, ())),
                results=tuple(results.get(key, ())),
                request_messages=builder.request(positions.get(key, []), count),
                **row,
            )
        )
    runs = []
    for run_id in ids:
        head = heads.get(run_id)
        if head is None:
            continue
        settings = _json(head["settings"]) or {}
        settings = settings if isinstance(settings, dict) else {}
        dialect = settings.get("dialect")
        runs.append(
            Run(
                id=run_id,
                provider=head["provider"],
                model=head["model"],
                dialect=dialect if isinstance(dialect, str) else None,
                termination=head["termination"],
                steps=tuple(steps.get(run_id, ())),
                raw_text=settings.get("variant") == "raw",
                parameter_probe=bool(settings.get("parameters")),
            )
        )
    return runs


def load_run(conn: duckdb.DuckDBPyConnection, run_id: str) -> Run:
    """The run `run_id` with every step, call and result; KeyError when it does not exist."""
    found = load_runs(conn, [run_id])
    if not found:
        raise KeyError(run_id)
    return found[0]

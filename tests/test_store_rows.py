"""Store rows: declared once per table, built by column name, read back column by column.

Every value of the step recorded here is distinct from every other (three times to first
token, five counts of tokens, several ids), and each is compared with the column it belongs
in by name: two columns swapped, even of the same type, fail the test.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from traces.importing import ImportOptions, import_files
from traces.model import (
    ExchangeError,
    RunOutcome,
    RunRecord,
    RunStatus,
    StepRecord,
    StreamEvent,
    Termination,
    ToolCallRecord,
    ToolResultRecord,
    Usage,
    message_hash,
    request_hash,
)
from traces.store.database import open_for_writing
from traces.store.recorder import Recorder
from traces.store.tables import (
    COLUMNS,
    ROW_TYPES,
    RUN_KEY,
    STORED,
    RunRow,
    RunUpdate,
    stored_columns,
)

JSON_COLUMNS = {
    "settings",
    "body",
    "response_headers",
    "request_params",
    "stream_events",
    "usage_raw",
    "retry_errors",
    "anomalies",
    "arguments",
    "skipped_lines",
}
"""Columns of type JSON, compared as the values their text encodes."""

STARTED = datetime(2026, 1, 2, 3, 4, 5, 600000)
STEP_AT = datetime(2026, 1, 2, 3, 4, 6, 700000)
TOOL_AT = datetime(2026, 1, 2, 3, 4, 7, 800000)
ENDED = datetime(2026, 1, 2, 3, 4, 8, 900000)
MESSAGE_A = {"role": "user", "content": "weather in Zürich?"}
MESSAGE_B = {"role": "tool", "tool_call_id": "call-9", "content": "sunny"}


def _key(digest: str) -> int:
    """A message's dedup key as the store computes it (DuckDB's `md5_number_lower`: the high
    half of the md5 of the hash text as a little-endian 128-bit number, migration 20)."""
    return int.from_bytes(hashlib.md5(digest.encode()).digest()[8:], "little")


def _read(db: Path, table: str, order: str) -> list[dict[str, Any]]:
    """Every row of `table`, by column name; JSON columns parsed."""
    conn = duckdb.connect(str(db), read_only=True)
    try:
        cursor = conn.execute(f"SELECT * FROM {table} ORDER BY {order}")
        names = [d[0] for d in cursor.description or []]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        conn.close()
    for row in rows:
        for name in JSON_COLUMNS & row.keys():
            if row[name] is not None:
                row[name] = json.loads(row[name])
    return rows


def _schema_columns(db: Path) -> dict[str, list[str]]:
    conn = open_for_writing(db)
    try:
        found = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
        ).fetchall()
    finally:
        conn.close()
    columns: dict[str, list[str]] = {}
    for table, column in found:
        columns.setdefault(table, []).append(column)
    return columns


def test_row_types_are_the_migrated_tables_columns_in_order(tmp_path: Path) -> None:
    schema = _schema_columns(tmp_path / "fresh.duckdb")
    for table in ROW_TYPES:
        # The base table its rows go to: the fields it keeps, then the derived columns.
        base, stored = stored_columns(table)
        assert list(stored) == schema[base], table
        assert [c for c in COLUMNS[table] if c not in stored] == list(
            STORED[table].dropped if table in STORED else ()
        ), table
        # A table stored under another name is a view of the row type's columns (and of
        # its run's key, which `tool_results` had before migration 16 made it a view).
        # (Less the fields the base table keeps for the view alone: migration 17's.)
        if base != table:
            shown = [c for c in COLUMNS[table] if c not in STORED[table].hidden]
            assert schema[table] in (shown, [*shown, RUN_KEY]), table
    # A run's ending sets columns of `runs`, by the same names.
    assert set(RunUpdate._fields) <= set(RunRow._fields)


def _run() -> RunRecord:
    return RunRecord(
        id="run-1",
        task="weather",
        task_path="tasks/weather.toml",
        task_sha256="f" * 64,
        provider="acme",
        model="m-1",
        base_url="http://127.0.0.1:9/v1",
        settings={"stream": True, "max_steps": 8},
        seed=41,
        started_at=STARTED,
        recorder_pid=4242,
        recorder_host="host-a",
        origin="probe",
        import_id="imp-7",
        conversation="conv-3",
        retry_of="run-0",
        sample="sample-9",
    )


def _step() -> StepRecord:
    return StepRecord(
        run_id="run-1",
        index=3,
        started_at=STEP_AT,
        latency_ms=904.5,
        ttft_reasoning_ms=101.25,
        ttft_content_ms=202.5,
        ttft_tool_call_ms=303.75,
        streamed=True,
        http_status=203,
        request_id="req-xyz",
        response_headers={"x-request-id": "req-xyz"},
        request_params={"model": "m-1", "temperature": 0.3},
        request_message_count=7,
        request_prefix=5,
        request_new_hashes=["hash-a", "hash-b"],
        response_body="raw body",
        stream_events=[StreamEvent(t_ms=12.5, line='data: {"x": 1}')],
        finish_reason_raw="tool_use",
        finish_reason="tool_calls",
        reasoning="let me think",
        reasoning_source="reasoning_content",
        content="visible text",
        usage=Usage(
            prompt_tokens=11,
            completion_tokens=13,
            reasoning_tokens=17,
            reasoning_tokens_source="estimated",
            cached_tokens=19,
            total_tokens=23,
        ),
        usage_raw={"prompt_tokens": 11},
        tool_calls=[
            ToolCallRecord(
                index=1,
                id="call-9",
                id_format="kimi",
                name="weather",
                arguments_raw='{"city": "Zürich"}',
                arguments_type="string",
                arguments={"city": "Zürich"},
                json_valid=True,
                schema_valid=False,
                schema_error="city: not allowed",
            )
        ],
        replay_message_hash="hash-replay",
        error=ExchangeError(kind="rate_limit", status=429, message="slow down", body="{}"),
        retries=2,
        retry_errors=[ExchangeError(kind="timeout", message="timed out")],
        anomalies=[{"kind": "odd"}],
        request_hash="hash-request",
        upstream_provider="upstream-b",
        resumption=2,
    )


async def _record(db: Path) -> None:
    recorder = Recorder(db)
    try:
        await recorder.begin_run(_run())
        await recorder.record_step(_step(), {"hash-a": MESSAGE_A, "hash-b": MESSAGE_B})
        result = ToolResultRecord(
            index=1,
            tool_call_id="call-9",
            name="weather",
            output="sunny",
            error="tool said no",
            error_kind="rejected",
            started_at=TOOL_AT,
            duration_ms=55.5,
            structured={"forecast": ["sunny", None], "ok": False},
        )
        await recorder.record_tool_results("run-1", 3, [result])
        outcome = RunOutcome(
            status=RunStatus.FAILED,
            termination=Termination.PROVIDER_ERROR,
            ended_at=ENDED,
            success=False,
            success_detail="no answer",
            final_answer="maybe",
            error="rate limited",
            steps=31,
            tool_calls=37,
            tool_errors=43,
            prompt_tokens=47,
            completion_tokens=53,
            reasoning_tokens=59,
        )
        await recorder.end_run("run-1", outcome)
    finally:
        recorder.close()


def test_a_recorded_step_reads_back_column_by_column(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    asyncio.run(_record(db))

    assert _read(db, "runs", "id") == [
        {
            "id": "run-1",
            "task": "weather",
            "task_path": "tasks/weather.toml",
            "task_sha256": "f" * 64,
            "provider": "acme",
            "model": "m-1",
            "base_url": "http://127.0.0.1:9/v1",
            "settings": {"stream": True, "max_steps": 8},
            "seed": 41,
            "status": "failed",
            "termination": "provider_error",
            "success": False,
            "success_detail": "no answer",
            "final_answer": "maybe",
            "error": "rate limited",
            "started_at": STARTED,
            "ended_at": ENDED,
            "steps": 31,
            "tool_calls": 37,
            "tool_errors": 43,
            "prompt_tokens": 47,
            "completion_tokens": 53,
            "reasoning_tokens": 59,
            "recorder_pid": 4242,
            "recorder_host": "host-a",
            "origin": "probe",
            "import_id": "imp-7",
            "conversation": "conv-3",
            "failure_summary": None,
            "findings_by_kind": None,
            "resumptions": 0,
            "retry_of": "run-0",
            "sample": "sample-9",
            "key": 1,
        }
    ]
    assert _read(db, "steps", "idx") == [
        {
            "run_id": "run-1",
            "idx": 3,
            "started_at": STEP_AT,
            "latency_ms": 904.5,
            "ttft_reasoning_ms": 101.25,
            "ttft_content_ms": 202.5,
            "ttft_tool_call_ms": 303.75,
            "streamed": True,
            "http_status": 203,
            "request_id": "req-xyz",
            "response_headers": {"x-request-id": "req-xyz"},
            "request_params": {"model": "m-1", "temperature": 0.3},
            "request_message_count": 7,
            "request_prefix": 5,
            "response_body": "raw body",
            "stream_events": [[12.5, 'data: {"x": 1}']],
            "finish_reason_raw": "tool_use",
            "finish_reason": "tool_calls",
            "reasoning": "let me think",
            "reasoning_source": "reasoning_content",
            "content": "visible text",
            "prompt_tokens": 11,
            "completion_tokens": 13,
            "reasoning_tokens": 17,
            "reasoning_tokens_source": "estimated",
            "cached_tokens": 19,
            "total_tokens": 23,
            "usage_raw": {"prompt_tokens": 11},
            "replay_message_hash": "hash-replay",
            "error_kind": "rate_limit",
            "error_status": 429,
            "error_message": "slow down",
            "error_body": "{}",
            "retries": 2,
            "retry_errors": [
                {"kind": "timeout", "status": None, "message": "timed out", "body": None}
            ],
            "anomalies": [{"kind": "odd"}],
            "request_hash": "hash-request",
            "upstream_provider": "upstream-b",
            "resumption": 2,
            "run_key": 1,
        }
    ]
    assert _read(db, "step_messages", "position") == [
        {"run_id": "run-1", "step_idx": 3, "position": 5, "hash": "hash-a"},
        {"run_id": "run-1", "step_idx": 3, "position": 6, "hash": "hash-b"},
    ]
    assert _read(db, "messages", "hash") == [
        # Numbered in the order the step stored them (migration 13).
        {"hash": "hash-a", "role": "user", "body": MESSAGE_A, "key": _key("hash-a"), "seq": 1},
        {"hash": "hash-b", "role": "tool", "body": MESSAGE_B, "key": _key("hash-b"), "seq": 2},
    ]
    assert _read(db, "step_message_keys", "position") == [
        {"run_id": "run-1", "step_idx": 3, "position": p, "key": _key(h), "run_key": 1, "seq": n}
        for p, h, n in ((5, "hash-a", 1), (6, "hash-b", 2))
    ]
    assert _read(db, "tool_calls", "call_idx") == [
        {
            "run_id": "run-1",
            "step_idx": 3,
            "call_idx": 1,
            "id": "call-9",
            "id_format": "kimi",
            "name": "weather",
            "arguments_raw": '{"city": "Zürich"}',
            "arguments_type": "string",
            "arguments": {"city": "Zürich"},
            "json_valid": True,
            "schema_valid": False,
            "schema_error": "city: not allowed",
            "run_key": 1,
        }
    ]
    assert _read(db, "tool_results", "call_idx") == [
        {
            "run_id": "run-1",
            "step_idx": 3,
            "call_idx": 1,
            "tool_call_id": "call-9",
            "name": "weather",
            "output": "sunny",
            "error": "tool said no",
            "started_at": TOOL_AT,
            "duration_ms": 55.5,
            "error_kind": "rejected",
            "structured": '{"forecast": ["sunny", null], "ok": false}',
            "run_key": 1,
        }
    ]


# The recorded step above as an exchange log has it: two lines of one conversation, the
# second sending back the first's answer and its tool's result. A log has no arrival times
# (the three times to first token stay null); everything else it carries is distinct.
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
SYSTEM = {"role": "system", "content": "be brief"}
CALL = {
    "id": "call-9",
    "type": "function",
    "function": {"name": "weather", "arguments": '{"city": "Zürich"}'},
}
REPLAYED = {"role": "assistant", "content": "visible text", "tool_calls": [CALL]}
USAGE = {
    "prompt_tokens": 11,
    "completion_tokens": 13,
    "total_tokens": 23,
    "completion_tokens_details": {"reasoning_tokens": 17},
    "prompt_tokens_details": {"cached_tokens": 19},
}
FIRST_RESPONSE = {
    "id": "cmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m-1",
    "choices": [
        {
            "index": 0,
            "message": {**REPLAYED, "reasoning_content": "let me think"},
            "finish_reason": "tool_calls",
        }
    ],
    "usage": USAGE,
}
PARAMS = {"model": "m-1", "tools": TOOLS, "temperature": 0.3, "seed": 41}


def _log_lines() -> list[dict[str, Any]]:
    answer = {"role": "assistant", "content": "sunny it is"}
    second = {
        "id": "cmpl-2",
        "object": "chat.completion",
        "created": 2,
        "model": "m-1",
        "choices": [{"index": 0, "message": answer, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 31, "completion_tokens": 5, "total_tokens": 36},
    }
    common = {"provider": "acme", "conversation": "conv-3"}
    return [
        {
            **common,
            "request": {**PARAMS, "messages": [SYSTEM, MESSAGE_A]},
            "response": FIRST_RESPONSE,
            "latency_ms": 904.5,
            "started_at": "2026-01-02T03:04:06.7Z",
            "headers": {"x-request-id": "req-xyz"},
            "status": 203,
        },
        {
            **common,
            "request": {**PARAMS, "messages": [SYSTEM, MESSAGE_A, REPLAYED, MESSAGE_B]},
            "response": second,
            "latency_ms": 100.0,
            "started_at": "2026-01-02T03:04:08.8Z",
        },
    ]


def test_an_imported_step_reads_back_column_by_column(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(line) + "\n" for line in _log_lines()))
    db = tmp_path / "t.duckdb"
    [report] = import_files(db, [log], ImportOptions(workers=1))
    [run_id] = report.runs
    hashes = [message_hash(m) for m in (SYSTEM, MESSAGE_A, REPLAYED, MESSAGE_B)]

    first_step = _read(db, "steps", "idx")[0]
    assert first_step == {
        "run_id": run_id,
        "idx": 0,
        "started_at": STEP_AT,
        "latency_ms": 904.5,
        "ttft_reasoning_ms": None,
        "ttft_content_ms": None,
        "ttft_tool_call_ms": None,
        "streamed": False,
        "http_status": 203,
        "request_id": "req-xyz",
        "response_headers": {"x-request-id": "req-xyz"},
        "request_params": PARAMS,
        "request_message_count": 2,
        "request_prefix": 0,
        "response_body": json.dumps(FIRST_RESPONSE, ensure_ascii=False),
        "stream_events": None,
        "finish_reason_raw": "tool_calls",
        "finish_reason": "tool_calls",
        "reasoning": "let me think",
        "reasoning_source": "reasoning_content",
        "content": "visible text",
        "prompt_tokens": 11,
        "completion_tokens": 13,
        "reasoning_tokens": 17,
        "reasoning_tokens_source": "reported",
        "cached_tokens": 19,
        "total_tokens": 23,
        "usage_raw": USAGE,
        "replay_message_hash": hashes[2],
        "error_kind": None,
        "error_status": None,
        "error_message": None,
        "error_body": None,
        "retries": 0,
        "retry_errors": None,
        "anomalies": None,
        "request_hash": request_hash(hashes[:2], PARAMS),
        "upstream_provider": None,
        "resumption": None,
        "run_key": 1,
    }
    assert _read(db, "step_messages", "step_idx, position") == [
        {"run_id": run_id, "step_idx": 0, "position": 0, "hash": hashes[0]},
        {"run_id": run_id, "step_idx": 0, "position": 1, "hash": hashes[1]},
        {"run_id": run_id, "step_idx": 1, "position": 2, "hash": hashes[2]},
        {"run_id": run_id, "step_idx": 1, "position": 3, "hash": hashes[3]},
    ]
    assert _read(db, "tool_calls", "step_idx") == [
        {
            "run_id": run_id,
            "step_idx": 0,
            "call_idx": 0,
            "id": "call-9",
            "id_format": "other",
            "name": "weather",
            "arguments_raw": '{"city": "Zürich"}',
            "arguments_type": "string",
            "arguments": {"city": "Zürich"},
            "json_valid": True,
            "schema_valid": True,
            "schema_error": None,
            "run_key": 1,
        }
    ]
    # The tools ran between the first response's end and the second request.
    assert _read(db, "tool_results", "step_idx") == [
        {
            "run_id": run_id,
            "step_idx": 0,
            "call_idx": 0,
            "tool_call_id": "call-9",
            "name": "weather",
            "output": "sunny",
            "error": None,
            "started_at": datetime(2026, 1, 2, 3, 4, 7, 604500),
            "duration_ms": 1195.5,
            "error_kind": None,  # a log does not say what kind of failure a tool had
            "structured": None,
            "run_key": 1,
        }
    ]
    [run] = _read(db, "runs", "id")
    assert run == {
        "id": run_id,
        "task": "import",
        "task_path": str(log),
        "task_sha256": report.sha256,
        "provider": "acme",
        "model": "m-1",
        "base_url": "",
        "settings": {"import": {"format": "exchanges", "line": 1}, "stream": False},
        "seed": 41,
        "status": "completed",
        "termination": "completed",
        "success": None,
        "success_detail": None,
        "final_answer": "sunny it is",
        "error": None,
        "started_at": STEP_AT,
        "ended_at": datetime(2026, 1, 2, 3, 4, 8, 900000),
        "steps": 2,
        "tool_calls": 1,
        "tool_errors": 0,
        "prompt_tokens": 42,
        "completion_tokens": 18,
        # The second answer's usage has no reasoning count: the run's total is unknown.
        "reasoning_tokens": None,
        "recorder_pid": os.getpid(),
        "recorder_host": socket.gethostname(),
        "origin": "imported",
        "import_id": report.import_id,
        "conversation": "conv-3",
        "failure_summary": None,
        "findings_by_kind": None,
        "resumptions": 0,
        "retry_of": None,
        "sample": None,
        "key": 1,
    }
    [imported] = _read(db, "imports", "id")
    assert imported == {
        "id": report.import_id,
        "path": str(log),
        "sha256": report.sha256,
        "format": "exchanges",
        "provider": None,
        "lines": 2,
        "exchanges": 2,
        "runs": 1,
        "skipped": 0,
        "skipped_lines": None,
        "imported_at": imported["imported_at"],
    }
    assert isinstance(imported["imported_at"], datetime)

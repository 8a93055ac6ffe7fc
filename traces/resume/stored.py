"""What a resumption or a retry reads from the store: the runs to take up, each one's
recorded history (steps, calls, results, the last request's messages), and the claim that
makes a resumed run `running` again under this process.

All of it goes through one short-lived connection opened for writing before the recorder
starts: it closes runs whose recorder died (as every writer does on opening), reads, and
claims atomically, so two resumptions of one run cannot both go ahead.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import duckdb

from traces.errors import TracesError
from traces.model import ExchangeError, ToolCallRecord, ToolErrorKind
from traces.store.database import Store, open_for_writing
from traces.store.run_tables import of_run_by_key, run_key_and_id
from traces.store.writer_process import mark_dead_runs_interrupted, pid_alive

_RUN_COLUMNS = (
    "id, task, task_path, task_sha256, provider, model, base_url, settings, seed, status, "
    "termination, origin, recorder_pid, recorder_host, resumptions, retry_of, error, sample"
)

ORIGIN_NOUNS = {
    "imported": "an imported",
    "probe": "a probe",
    "proxy": "a proxied",
    "replay": "a replayed",
}
"""How a refusal names a run that `traces record` did not record (`run X is a probe run`)."""


@dataclass(frozen=True)
class StoredRun:
    """A `runs` row, as much of it as resuming or retrying needs."""

    id: str
    task: str
    task_path: str
    task_sha256: str
    provider: str
    model: str
    base_url: str
    settings: dict[str, Any]
    seed: int
    status: str
    termination: str | None
    origin: str
    recorder_pid: int
    recorder_host: str
    resumptions: int
    retry_of: str | None
    error: str | None
    sample: str | None = None


@dataclass(frozen=True)
class StoredStep:
    """A `steps` row: how the step's request was stored and how its response ended."""

    index: int
    request_message_count: int
    error: ExchangeError | None
    content: str | None
    finish_reason: str
    replay_message_hash: str | None
    tokens: dict[str, int | None]
    """`prompt_tokens`, `completion_tokens`, `reasoning_tokens` as stored."""


@dataclass(frozen=True)
class StoredResult:
    """A `tool_results` row: what one call returned to the model."""

    call_index: int
    tool_call_id: str | None
    name: str
    output: str
    error: str | None
    error_kind: ToolErrorKind | None


@dataclass
class RunHistory:
    """Everything a run recorded that its resumption rebuilds from."""

    run: StoredRun
    steps: list[StoredStep]
    calls: dict[int, list[ToolCallRecord]] = field(default_factory=dict)
    """Each step's tool calls, in call order."""
    results: dict[int, list[StoredResult]] = field(default_factory=dict)
    """Each step's recorded tool results, in call order."""
    last_request: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(hash, message) of every message of the last step's request, in order."""
    last_reply: dict[str, Any] | None = None
    """The assistant message the last step's answer went back as, when there was one."""

    @property
    def result_count(self) -> int:
        """Tool results stored for the run (the claim checks nothing was added since)."""
        return sum(len(results) for results in self.results.values())


def open_store(db_path: Store) -> duckdb.DuckDBPyConnection:
    """The store opened for writing, runs of dead recorders closed as interrupted."""
    conn = open_for_writing(db_path)
    try:
        mark_dead_runs_interrupted(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def stored_run(conn: duckdb.DuckDBPyConnection, run_id: str) -> StoredRun:
    """The run `run_id` (a whole id)."""
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", [run_id]).fetchone()
    if row is None:
        raise TracesError(f"no run with id {run_id!r} (see `traces runs`)")
    return _run(row)


def interrupted_runs(conn: duckdb.DuckDBPyConnection) -> list[StoredRun]:
    """Every recorded run left interrupted, oldest first."""
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE status = 'interrupted' AND origin = 'recorded' "
        "ORDER BY started_at, id"
    ).fetchall()
    return [_run(row) for row in rows]


def failed_runs(conn: duckdb.DuckDBPyConnection, *, again: bool) -> list[StoredRun]:
    """Every recorded run that ended with a provider error, oldest first; without `again`,
    only those no run retries yet."""
    not_retried = (
        "" if again else "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.retry_of = runs.id)"
    )
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE origin = 'recorded' AND status = 'failed' "
        f"AND termination = 'provider_error' {not_retried} ORDER BY started_at, id"
    ).fetchall()
    return [_run(row) for row in rows]


def retries_of(conn: duckdb.DuckDBPyConnection, run_id: str) -> list[str]:
    """The runs that record `run_id` again, oldest first."""
    rows = conn.execute(
        "SELECT id FROM runs WHERE retry_of = ? ORDER BY started_at, id", [run_id]
    ).fetchall()
    return [str(r[0]) for r in rows]


def still_recording(run: StoredRun) -> bool:
    """Whether a `running` run's recorder may still be at work (on another host, who can
    tell: it counts as alive)."""
    return run.recorder_host != socket.gethostname() or pid_alive(run.recorder_pid)


def load_history(conn: duckdb.DuckDBPyConnection, run: StoredRun) -> RunHistory:
    """The run's steps, tool calls and results, and its last request's messages."""
    keyed = run_key_and_id(conn, run.id)
    steps = [
        StoredStep(
            index=int(idx),
            request_message_count=int(count),
            error=None
            if kind is None
            else ExchangeError(kind=kind, status=status, message=message or "", body=body),
            content=content,
            finish_reason=str(finish),
            replay_message_hash=replay,
            tokens={
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "reasoning_tokens": reasoning,
            },
        )
        for (
            idx,
            count,
            kind,
            status,
            message,
            body,
            content,
            finish,
            replay,
            prompt,
            completion,
            reasoning,
        ) in conn.execute(
            "SELECT idx, request_message_count, error_kind, error_status, error_message, "
            "error_body, content, finish_reason, replay_message_hash, prompt_tokens, "
            f"completion_tokens, reasoning_tokens FROM steps WHERE {of_run_by_key()} ORDER BY idx",
            keyed,
        ).fetchall()
    ]
    history = RunHistory(run=run, steps=steps)
    for step_idx, *call in conn.execute(
        "SELECT step_idx, call_idx, id, id_format, name, arguments_raw, arguments_type, "
        "arguments, json_valid, schema_valid, schema_error FROM tool_calls "
        f"WHERE {of_run_by_key()} ORDER BY step_idx, call_idx",
        keyed,
    ).fetchall():
        history.calls.setdefault(int(step_idx), []).append(_call(call))
    for step_idx, call_idx, reply_id, name, output, error, kind in conn.execute(
        "SELECT step_idx, call_idx, tool_call_id, name, output, error, error_kind "
        f"FROM tool_results WHERE {of_run_by_key()} ORDER BY step_idx, call_idx",
        keyed,
    ).fetchall():
        history.results.setdefault(int(step_idx), []).append(
            StoredResult(
                call_index=int(call_idx),
                tool_call_id=reply_id,
                name=name,
                output=output,
                error=error,
                error_kind=None if kind is None else ToolErrorKind(kind),
            )
        )
    if steps:
        last = steps[-1]
        history.last_request = [
            (str(digest), json.loads(body))
            for digest, body in conn.execute(
                "SELECT hash, body FROM request_messages(?, ?)", [run.id, last.index]
            ).fetchall()
        ]
        if last.replay_message_hash is not None:
            row = conn.execute(
                "SELECT body FROM messages WHERE hash = ?", [last.replay_message_hash]
            ).fetchone()
            history.last_reply = None if row is None else json.loads(row[0])
    return history


def claim(conn: duckdb.DuckDBPyConnection, history: RunHistory) -> int | None:
    """Make an interrupted run `running` again under this process, if it is still exactly
    as `history` read it (no other resumption took it up since); its resumption number
    (1 for the first), or None when it is not.

    The recorder's pid and host become this process's, so that a resumption killed in turn
    is closed as interrupted by the next writer, and can be resumed again.
    """
    run_id = history.run.id
    keyed = run_key_and_id(conn, run_id)
    # No RETURNING: a lake store (DuckLake) cannot return from an UPDATE. The count of rows
    # it changed says whether the claim held, in the caller's transaction.
    row = conn.execute(
        f"""
        UPDATE runs SET status = 'running', termination = NULL, error = NULL,
            ended_at = NULL, recorder_pid = ?, recorder_host = ?,
            resumptions = coalesce(resumptions, 0) + 1
        WHERE id = ? AND status = 'interrupted'
          AND (SELECT count(*) FROM step_rows WHERE {of_run_by_key()}) = ?
          AND (SELECT count(*) FROM tool_result_rows WHERE {of_run_by_key()}) = ?
        """,
        [
            os.getpid(),
            socket.gethostname(),
            run_id,
            *keyed,
            len(history.steps),
            *keyed,
            history.result_count,
        ],
    ).fetchone()
    if row is None or int(row[0]) == 0:
        return None
    number = conn.execute("SELECT resumptions FROM runs WHERE id = ?", [run_id]).fetchone()
    return None if number is None else int(number[0])


def _run(row: tuple[Any, ...]) -> StoredRun:
    (
        run_id,
        task,
        task_path,
        task_sha256,
        provider,
        model,
        base_url,
        settings,
        seed,
        status,
        termination,
        origin,
        pid,
        host,
        resumptions,
        retry_of,
        error,
        sample,
    ) = row
    return StoredRun(
        id=run_id,
        task=task,
        task_path=task_path,
        task_sha256=task_sha256,
        provider=provider,
        model=model,
        base_url=base_url,
        settings=json.loads(settings) if isinstance(settings, str) else dict(settings),
        seed=int(seed),
        status=status,
        termination=termination,
        origin=origin or "recorded",
        recorder_pid=int(pid),
        recorder_host=host,
        resumptions=int(resumptions or 0),
        retry_of=retry_of,
        error=error,
        sample=sample,
    )


def _call(row: list[Any]) -> ToolCallRecord:
    (
        call_idx,
        call_id,
        id_format,
        name,
        raw,
        arguments_type,
        arguments,
        json_valid,
        schema_valid,
        schema_error,
    ) = row
    return ToolCallRecord(
        index=int(call_idx),
        id=call_id,
        id_format=id_format,
        name=name,
        arguments_raw=raw,
        arguments_type=arguments_type,
        arguments=None if arguments is None else json.loads(arguments),
        json_valid=bool(json_valid),
        schema_valid=schema_valid,
        schema_error=schema_error,
    )

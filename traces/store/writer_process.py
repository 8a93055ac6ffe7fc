"""The writer process: owns the DuckDB connection, group-commits, acknowledges by sequence.

Why a process and not a thread: converting a batch's parameters and running its inserts and
commit costs about half a millisecond of CPU per step, most of it holding the GIL. In a
thread of the agent process that time is taken from the event loop that drives every run;
in its own process it runs on another core and the agent process only pickles row tuples.

Protocol, over two one-way pipes (`multiprocessing` connections, pickles):

- parent -> child (`ops`): lists of operations `(seq, rows)`. `seq` numbers operations from
  1 in the order they were queued; `rows` maps a table name of `TABLES` (or `run_updates`)
  to row tuples in that table's column order. The parent closes its end to stop the writer.
- child -> parent (`acks`): first `("ready", None)`, or `("failed", one-line message)` when
  the database cannot be opened. Then `(seq, error)` after each transaction: every operation
  up to `seq` is committed (`error` is None) or was rolled back (`error` says why).

The child commits everything it has received before it exits, whether the parent closed the
pipe on purpose or was killed: what reached the pipe is not lost.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from traces import interrupts
from traces.errors import DatabaseError
from traces.one_line import exception_line
from traces.store.database import open_for_writing

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

Row = tuple[Any, ...]
Rows = dict[str, list[Row]]
Op = tuple[int, Rows]

_MAX_OPS_PER_COMMIT = 4096
"""Bound on one transaction, so a flood of queued work still gets acknowledged in steps."""


def _bulk_insert(table: str, columns: tuple[str, ...], suffix: str = "") -> str:
    # One statement per table and batch: each `$i` is a whole column as a list, unnested back
    # into rows. DuckDB's executemany runs the statement once per row (0.4-1 ms each); one
    # statement over a batch of dozens of rows costs about what two or three single rows did.
    unnested = ", ".join(f"unnest(${i})" for i in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {unnested}{suffix}"


TABLES: dict[str, tuple[str, ...]] = {
    "runs": (
        "id",
        "task",
        "task_path",
        "task_sha256",
        "provider",
        "model",
        "base_url",
        "settings",
        "seed",
        "status",
        "started_at",
        "recorder_pid",
        "recorder_host",
        "origin",
        "import_id",
        "conversation",
    ),
    "messages": ("hash", "role", "body"),
    "steps": (
        "run_id",
        "idx",
        "started_at",
        "latency_ms",
        "ttft_reasoning_ms",
        "ttft_content_ms",
        "ttft_tool_call_ms",
        "streamed",
        "http_status",
        "request_id",
        "response_headers",
        "request_params",
        "request_message_count",
        "request_prefix",
        "response_body",
        "stream_events",
        "finish_reason_raw",
        "finish_reason",
        "reasoning",
        "reasoning_source",
        "content",
        "prompt_tokens",
        "completion_tokens",
        "reasoning_tokens",
        "reasoning_tokens_source",
        "cached_tokens",
        "total_tokens",
        "usage_raw",
        "replay_message_hash",
        "error_kind",
        "error_status",
        "error_message",
        "error_body",
        "retries",
        "retry_errors",
        "anomalies",
        "request_hash",
        "upstream_provider",
    ),
    "step_messages": ("run_id", "step_idx", "position", "hash"),
    "tool_calls": (
        "run_id",
        "step_idx",
        "call_idx",
        "id",
        "id_format",
        "name",
        "arguments_raw",
        "arguments_type",
        "arguments",
        "json_valid",
        "schema_valid",
        "schema_error",
    ),
    "tool_results": (
        "run_id",
        "step_idx",
        "call_idx",
        "tool_call_id",
        "name",
        "output",
        "error",
        "error_kind",
        "started_at",
        "duration_ms",
    ),
}
"""Columns of each inserted table, in the order of the row tuples the parent sends.

Inserted in this order within a transaction (a run before its steps), then `run_updates`.
"""

_INSERTS = {
    table: _bulk_insert(table, columns, " ON CONFLICT DO NOTHING" if table == "messages" else "")
    for table, columns in TABLES.items()
}

UPDATE_RUN_COLUMNS = (
    "status",
    "termination",
    "success",
    "success_detail",
    "final_answer",
    "error",
    "ended_at",
    "steps",
    "tool_calls",
    "tool_errors",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
)
"""Columns a `run_updates` row sets, followed by the run id."""

_UPDATE_RUN = f"UPDATE runs SET {', '.join(f'{c} = ?' for c in UPDATE_RUN_COLUMNS)} WHERE id = ?"


def writer_main(path: Path, ops: Connection, acks: Connection) -> None:
    """The child's whole life: open the database, then commit and acknowledge until EOF."""
    # Only the parent decides when recording ends. Ctrl-C reaches the whole process group,
    # and the parent still has to record its runs as interrupted through this writer. (It
    # started with both signals blocked; see `Recorder`.)
    interrupts.ignore_in_child()
    try:
        conn = open_for_writing(path)
        # A batch is a few dozen rows: DuckDB's worker threads cannot speed that up, and
        # waking them cost ~12% more CPU on a machine whose cores the agents need.
        conn.execute("SET threads = 1")
        mark_dead_runs_interrupted(conn)
    except Exception as exc:
        if isinstance(exc, DatabaseError):
            detail = str(exc)
        else:
            detail = f"{path}: cannot open database: {exception_line(exc)}"
        # A parent that stopped waiting (Ctrl-C) has closed the pipe: nobody to tell.
        with contextlib.suppress(OSError):
            acks.send(("failed", detail))
        return
    try:
        try:
            acks.send(("ready", None))
        except OSError:
            return  # the parent stopped waiting for this (Ctrl-C): nothing will come
        eof = False
        while not eof:
            batch, eof = _receive(ops)
            if batch:
                error = _commit(conn, batch)
                # A parent that is gone cannot be told; the rows are committed all the same.
                with contextlib.suppress(OSError):
                    acks.send((batch[-1][0], error))
    finally:
        conn.close()


def _receive(ops: Connection) -> tuple[list[Op], bool]:
    """Wait for work, then take everything else already sent: one commit covers all of it."""
    batch: list[Op] = []
    try:
        batch.extend(ops.recv())
        while len(batch) < _MAX_OPS_PER_COMMIT and ops.poll():
            batch.extend(ops.recv())
    except (EOFError, OSError):
        # Closed, or the parent died (a message cut short by a kill raises OSError). Every
        # whole message already received is still committed.
        return batch, True
    return batch, False


def _commit(conn: duckdb.DuckDBPyConnection, batch: list[Op]) -> str | None:
    """Insert a batch in one transaction; the error as one line, or None."""
    rows: defaultdict[str, list[Row]] = defaultdict(list)
    for _, op in batch:
        for table, table_rows in op.items():
            rows[table].extend(table_rows)
    try:
        conn.execute("BEGIN TRANSACTION")
        for table in TABLES:
            if rows[table]:
                conn.execute(_INSERTS[table], [list(c) for c in zip(*rows[table], strict=True)])
        if rows["run_updates"]:
            conn.executemany(_UPDATE_RUN, rows["run_updates"])
        conn.execute("COMMIT")
    except Exception as exc:
        with contextlib.suppress(duckdb.Error):
            conn.execute("ROLLBACK")
        return exception_line(exc)
    return None


def mark_dead_runs_interrupted(conn: duckdb.DuckDBPyConnection) -> int:
    """Close runs left `running` by recorders on this host that no longer exist.

    A killed process cannot say goodbye; the next writer to open the file says it for it,
    and fills in the totals from the steps that were durably recorded.
    """
    host = socket.gethostname()
    found = conn.execute(
        "SELECT id, recorder_pid FROM runs WHERE status = 'running' AND recorder_host = ?", [host]
    ).fetchall()
    dead = [run_id for run_id, pid in found if not pid_alive(int(pid))]
    for run_id in dead:
        conn.execute(
            """
            UPDATE runs SET status = 'interrupted', termination = 'interrupted',
                error = 'recorder process ended before the run finished',
                steps = (SELECT count(*) FROM steps WHERE run_id = runs.id),
                tool_calls = (SELECT count(*) FROM tool_calls WHERE run_id = runs.id),
                tool_errors = (SELECT count(*) FROM tool_results
                               WHERE run_id = runs.id AND error IS NOT NULL),
                prompt_tokens = (SELECT coalesce(sum(prompt_tokens), 0) FROM steps
                                 WHERE run_id = runs.id),
                completion_tokens = (SELECT coalesce(sum(completion_tokens), 0) FROM steps
                                     WHERE run_id = runs.id),
                reasoning_tokens = (SELECT coalesce(sum(reasoning_tokens), 0) FROM steps
                                    WHERE run_id = runs.id)
            WHERE id = ?
            """,
            [run_id],
        )
    return len(dead)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

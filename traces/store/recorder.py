"""The durable recorder: one writer thread owns the DuckDB connection and group-commits.

Why a thread: DuckDB calls block, and the harness drives dozens of runs on one event loop.
Agents hand their rows to the writer and await a future that resolves once the rows are
committed, so a step is durable when the agent moves on, yet 64 concurrent runs share one
transaction per batch instead of paying a commit each (group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from traces.errors import DatabaseError
from traces.model import (
    RunOutcome,
    RunRecord,
    RunStatus,
    StepRecord,
    ToolResultRecord,
)
from traces.store.database import open_for_writing

_MAX_BATCH = 256


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


@dataclass
class _Batch:
    """Rows of one or more operations, inserted together in one transaction."""

    runs: list[tuple[Any, ...]] = field(default_factory=list)
    run_updates: list[tuple[Any, ...]] = field(default_factory=list)
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    steps: list[tuple[Any, ...]] = field(default_factory=list)
    step_messages: list[tuple[Any, ...]] = field(default_factory=list)
    tool_calls: list[tuple[Any, ...]] = field(default_factory=list)
    tool_results: list[tuple[Any, ...]] = field(default_factory=list)


_Op = Callable[[_Batch], None]


def _run_row(run: RunRecord) -> tuple[Any, ...]:
    return (
        run.id,
        run.task,
        run.task_path,
        run.task_sha256,
        run.provider,
        run.model,
        run.base_url,
        _json(run.settings),
        run.seed,
        RunStatus.RUNNING.value,
        run.started_at,
        run.recorder_pid,
        run.recorder_host,
    )


def _step_row(step: StepRecord) -> tuple[Any, ...]:
    usage = step.usage
    err = step.error
    return (
        step.run_id,
        step.index,
        step.started_at,
        step.latency_ms,
        step.ttft_reasoning_ms,
        step.ttft_content_ms,
        step.ttft_tool_call_ms,
        step.streamed,
        step.http_status,
        step.request_id,
        _json(step.response_headers),
        _json(step.request_params),
        step.request_message_count,
        step.request_prefix,
        step.response_body,
        _json([[e.t_ms, e.line] for e in step.stream_events])
        if step.stream_events is not None
        else None,
        step.finish_reason_raw,
        step.finish_reason,
        step.reasoning,
        step.reasoning_source,
        step.content,
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.reasoning_tokens,
        usage.reasoning_tokens_source,
        usage.cached_tokens,
        usage.total_tokens,
        _json(step.usage_raw),
        step.replay_message_hash,
        err.kind if err else None,
        err.status if err else None,
        err.message if err else None,
        err.body if err else None,
        step.retries,
        _json([e.model_dump() for e in step.retry_errors]) if step.retry_errors else None,
        _json(step.anomalies) if step.anomalies else None,
    )


def _bulk_insert(table: str, columns: str | None, width: int, suffix: str = "") -> str:
    # One statement per table and batch: each `$i` is a whole column as a list, unnested back
    # into rows. DuckDB's executemany runs the statement once per row (0.4-1 ms each), which
    # made the writer thread the bottleneck of 64 concurrent runs; one statement over a batch
    # of dozens of rows costs about what two or three single rows did (5x less writer time).
    target = f"{table} ({columns})" if columns else table
    unnested = ", ".join(f"unnest(${i})" for i in range(1, width + 1))
    return f"INSERT INTO {target} SELECT {unnested}{suffix}"


_INSERTS = {
    "runs": _bulk_insert(
        "runs",
        "id, task, task_path, task_sha256, provider, model, base_url, settings, seed, status, "
        "started_at, recorder_pid, recorder_host",
        13,
    ),
    "messages": _bulk_insert("messages", None, 3, " ON CONFLICT DO NOTHING"),
    "steps": _bulk_insert("steps", None, 36),
    "step_messages": _bulk_insert("step_messages", None, 4),
    "tool_calls": _bulk_insert("tool_calls", None, 12),
    "tool_results": _bulk_insert("tool_results", None, 9),
}

_UPDATE_RUN = (
    "UPDATE runs SET status = ?, termination = ?, success = ?, success_detail = ?, "
    "final_answer = ?, error = ?, ended_at = ?, steps = ?, tool_calls = ?, tool_errors = ?, "
    "prompt_tokens = ?, completion_tokens = ?, reasoning_tokens = ? WHERE id = ?"
)


def _outcome_row(run_id: str, outcome: RunOutcome) -> tuple[Any, ...]:
    return (
        outcome.status.value,
        outcome.termination.value,
        outcome.success,
        outcome.success_detail,
        outcome.final_answer,
        outcome.error,
        outcome.ended_at,
        outcome.steps,
        outcome.tool_calls,
        outcome.tool_errors,
        outcome.prompt_tokens,
        outcome.completion_tokens,
        outcome.reasoning_tokens,
        run_id,
    )


def mark_dead_runs_interrupted(conn: duckdb.DuckDBPyConnection) -> int:
    """Close runs left `running` by recorders on this host that no longer exist.

    A killed process cannot say goodbye; the next writer to open the file says it for it,
    and fills in the totals from the steps that were durably recorded.
    """
    host = socket.gethostname()
    rows = conn.execute(
        "SELECT id, recorder_pid FROM runs WHERE status = 'running' AND recorder_host = ?", [host]
    ).fetchall()
    dead = [run_id for run_id, pid in rows if not pid_alive(int(pid))]
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


class Recorder:
    """Durably records runs, steps, messages, tool calls and results into one database file."""

    def __init__(self, path: Path) -> None:
        """Open (create, migrate) the database and start the writer thread."""
        self.path = path
        self._conn = open_for_writing(path)
        mark_dead_runs_interrupted(self._conn)
        self._queue: queue.Queue[tuple[_Op, asyncio.Future[None] | None] | None] = queue.Queue()
        self._known_messages: set[str] = set()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, name="traces-recorder")
        self._thread.daemon = True
        self._thread.start()
        self.host = socket.gethostname()
        self.pid = os.getpid()

    # -- public API, called from the event loop -------------------------------------------

    async def begin_run(self, run: RunRecord) -> None:
        """Insert the run as `running`."""
        row = _run_row(run)
        await self._submit(lambda b: b.runs.append(row))

    async def record_step(self, step: StepRecord, new_messages: dict[str, dict[str, Any]]) -> None:
        """Insert one step with its tool calls and the messages not stored before."""
        await self.queue_step(step, new_messages)

    def queue_step(
        self, step: StepRecord, new_messages: dict[str, dict[str, Any]]
    ) -> asyncio.Future[None]:
        """Queue `record_step`'s rows now; the future resolves once they are committed.

        Operations commit in the order they are queued, so once anything queued later (the
        step's tool results) is committed, the step is too.
        """
        fresh = [
            (h, m.get("role", ""), json.dumps(m, ensure_ascii=False))
            for h, m in new_messages.items()
            if h not in self._known_messages
        ]
        self._known_messages.update(new_messages)
        step_row = _step_row(step)
        position_rows = [
            (step.run_id, step.index, step.request_prefix + offset, digest)
            for offset, digest in enumerate(step.request_new_hashes)
        ]
        call_rows = [
            (
                step.run_id,
                step.index,
                c.index,
                c.id,
                c.id_format,
                c.name,
                c.arguments_raw,
                c.arguments_type,
                _json(c.arguments) if c.json_valid else None,
                c.json_valid,
                c.schema_valid,
                c.schema_error,
            )
            for c in step.tool_calls
        ]

        def add(batch: _Batch) -> None:
            batch.messages.extend(fresh)
            batch.steps.append(step_row)
            batch.step_messages.extend(position_rows)
            batch.tool_calls.extend(call_rows)

        return self._enqueue(add)

    async def record_tool_results(
        self, run_id: str, step_index: int, results: list[ToolResultRecord]
    ) -> None:
        """Insert what the tools of one step returned."""
        rows = [
            (
                run_id,
                step_index,
                r.index,
                r.tool_call_id,
                r.name,
                r.output,
                r.error,
                r.started_at,
                r.duration_ms,
            )
            for r in results
        ]
        await self._submit(lambda b: b.tool_results.extend(rows))

    async def end_run(self, run_id: str, outcome: RunOutcome) -> None:
        """Write the run's final status, termination and totals."""
        row = _outcome_row(run_id, outcome)
        await self._submit(lambda b: b.run_updates.append(row))

    def close(self) -> None:
        """Flush everything queued, stop the writer and close the database."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._conn.close()

    def end_run_sync(self, run_id: str, outcome: RunOutcome) -> None:
        """Record an outcome from outside the event loop (used when the loop is gone)."""
        done = threading.Event()

        row = _outcome_row(run_id, outcome)

        def op(batch: _Batch) -> None:
            batch.run_updates.append(row)
            done.set()

        self._queue.put((op, None))
        done.wait(timeout=30)

    # -- writer thread ----------------------------------------------------------------------

    def _enqueue(self, op: _Op) -> asyncio.Future[None]:
        if self._failure is not None:
            raise DatabaseError(f"{self.path}: recording failed: {self._failure}")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put((op, future))
        return future

    async def _submit(self, op: _Op) -> None:
        await self._enqueue(op)

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                break
            items = [item]
            # Take whatever else is already waiting: one commit covers all of it.
            while len(items) < _MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                items.append(nxt)
            batch = _Batch()
            for op, _ in items:
                op(batch)
            error: BaseException | None = None
            try:
                self._commit(batch)
            except BaseException as exc:  # surfaced to every waiting agent, then re-raised there
                error = exc
                self._failure = exc
            for _, future in items:
                if future is not None:
                    _resolve(future, error)

    def _commit(self, batch: _Batch) -> None:
        conn = self._conn
        conn.execute("BEGIN TRANSACTION")
        try:
            for table, rows in (
                ("runs", batch.runs),
                ("messages", batch.messages),
                ("steps", batch.steps),
                ("step_messages", batch.step_messages),
                ("tool_calls", batch.tool_calls),
                ("tool_results", batch.tool_results),
            ):
                if rows:
                    conn.execute(_INSERTS[table], [list(c) for c in zip(*rows, strict=True)])
            if batch.run_updates:
                conn.executemany(_UPDATE_RUN, batch.run_updates)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    def settle() -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(DatabaseError(f"recording failed: {error}"))

    # A closed loop means nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        future.get_loop().call_soon_threadsafe(settle)

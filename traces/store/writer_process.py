"""The writer process: owns the DuckDB connection, group-commits, acknowledges by sequence.

Why a process and not a thread: converting a batch's parameters and running its inserts and
commit costs about half a millisecond of CPU per step, most of it holding the GIL. In a
thread of the agent process that time is taken from the event loop that drives every run;
in its own process it runs on another core and the agent process only pickles row tuples.

Protocol, over two one-way pipes (`multiprocessing` connections, pickles):

- parent -> child (`ops`): lists of operations `(seq, rows)`. `seq` numbers operations from
  1 in the order they were queued; `rows` maps a table name of `tables.ROW_TYPES` to rows
  of that table's row type, or `run_updates` to `tables.RunUpdate`s. The parent closes its
  end to stop the writer.
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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb

from traces import interrupts
from traces.errors import DatabaseError
from traces.store.database import Store, open_for_writing
from traces.store.inserts import insert_rows, update_runs
from traces.store.lake import error_line, transaction
from traces.store.tables import ROW_TYPES
from traces.token_totals import TOKEN_COLUMNS, known_sum

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

Row = tuple[Any, ...]
Rows = dict[str, Sequence[Row]]
Op = tuple[int, Rows]

_TOKEN_TOTALS = ",\n".join(
    f"{c} = (SELECT {known_sum(c)} FROM steps WHERE run_id = runs.id)" for c in TOKEN_COLUMNS
)
"""The token totals of a run closed for its dead recorder, from the steps it recorded."""

_MAX_OPS_PER_COMMIT = 4096
"""Bound on one transaction, so a flood of queued work still gets acknowledged in steps."""


def writer_main(path: Store, ops: Connection, acks: Connection) -> None:
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
        transaction(conn, lambda: mark_dead_runs_interrupted(conn))
    except Exception as exc:
        if isinstance(exc, DatabaseError):
            detail = str(exc)
        else:
            detail = f"{path}: cannot open database: {error_line(exc)}"
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
    """Insert a batch in one transaction; the error as one line, or None. (On a lake, the
    transaction is done again when another writer's commit conflicted with it.)"""
    rows: defaultdict[str, list[Row]] = defaultdict(list)
    for _, op in batch:
        for table, table_rows in op.items():
            rows[table].extend(table_rows)

    def insert() -> None:
        for table in ROW_TYPES:  # a run before its steps
            # The recorder sends each message once (`Recorder.queue_step`); on a lake, what
            # another recorder stored too is kept twice, not looked for (`inserts.Dedup`).
            insert_rows(conn, table, rows[table], check_stored=False)
        update_runs(conn, rows["run_updates"])

    try:
        transaction(conn, insert)
    except Exception as exc:
        return error_line(exc)
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
    close_interrupted(conn, dead)
    return len(dead)


def close_interrupted(conn: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> None:
    """End runs left `running` by a recorder that no longer writes them (the store's default
    catalog): `interrupted`, with the totals of the steps that were durably recorded."""
    if not run_ids:
        return
    conn.execute(
        f"""
        UPDATE runs SET status = 'interrupted', termination = 'interrupted',
            error = 'recorder process ended before the run finished',
            steps = (SELECT count(*) FROM steps WHERE run_id = runs.id),
            tool_calls = (SELECT count(*) FROM tool_calls WHERE run_id = runs.id),
            tool_errors = (SELECT count(*) FROM tool_results
                           WHERE run_id = runs.id AND error IS NOT NULL),
            {_TOKEN_TOTALS}
        WHERE list_contains(?, id) AND status = 'running'
        """,
        [list(run_ids)],
    )


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

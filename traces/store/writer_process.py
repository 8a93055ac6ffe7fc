"""The writer inside the store's server: group-commits recorders' operations, acks by sequence.

Why a process and not a thread of the recording command: converting a batch's parameters and
running its inserts and commit costs about half a millisecond of CPU per step, most of it
holding the GIL. In a thread of the agent process that time is taken from the event loop that
drives every run; in the server it runs on another core and the agent process only pickles
row tuples.

Every recorder connected to the server (`traces.store.server`) sends lists of operations
`(seq, rows)`: `seq` numbers a recorder's operations from 1 in the order it queued them;
`rows` maps a table name of `tables.ROW_TYPES` to rows of that table's row type,
`run_updates` to `tables.RunUpdate`s, `step_replays` to `tables.StepReplay`s or
`output_replays` to `tables.OutputReplay`s. The writer takes everything every recorder has
sent so far and commits it in one transaction, then tells each recorder the highest of its
operations committed (or why they were rolled back).
Sixty-four runs of four recorders share one commit per batch instead of paying one each.

A recorder whose server died resends what was not acknowledged, marked as a replay: an
operation whose rows are already stored (the old server committed it but could not say so)
is skipped, so nothing is stored twice. A recorder that disappears (killed) has what reached
the server committed all the same, and its runs closed as interrupted.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from traces.store.inserts import insert_rows, replay_outputs, replay_steps, update_runs
from traces.store.lake import error_line, is_lake, transaction
from traces.store.numbers import MessageNumbers, Plan
from traces.store.run_tables import RUN_COLUMN
from traces.store.tables import COLUMNS, ROW_TYPES
from traces.token_totals import TOKEN_COLUMNS, known_sum

Row = tuple[Any, ...]
Rows = dict[str, Sequence[Row]]
Op = tuple[int, Rows]

_TOKEN_TOTALS = ",\n".join(
    f"{c} = (SELECT {known_sum(c)} FROM step_rows WHERE run_id = runs.id)" for c in TOKEN_COLUMNS
)
"""The token totals of a run closed for its dead recorder, from the steps it recorded."""

MAX_OPS_PER_COMMIT = 4096
"""Bound on one transaction, so a flood of queued work still gets acknowledged in steps."""

DYING_WAIT_S = 5.0
"""How long a recorder whose connection dropped while it still existed is watched for its
end (a killed process takes milliseconds; one that lives on keeps its runs)."""

CONFLICT_WAIT_S = 60.0
"""How long a batch that conflicts with another transaction (an analysis updating the same
run) is retried before its recorders are told it failed."""


@dataclass(eq=False)
class Recording:
    """One recorder's session, as the writer sees it."""

    pid: int
    """The recording process (its runs are closed as interrupted when it is gone)."""
    acknowledge: Callable[[tuple[Any, ...]], None]
    """Sends a message to the recorder; raises OSError when it is gone."""
    received: int = 0
    """Highest operation received: a resent one at or below it is a duplicate."""
    failed: bool = field(default=False)


@dataclass
class _Work:
    recording: Recording
    ops: list[Op]
    replay: bool


class Writer:
    """Commits recorders' operations (see the module's docstring).

    No thread of its own: the thread of the session that receives operations commits them,
    with everything any other session queued meanwhile, unless another is committing
    already, which then takes them too before it lets go (leader and followers). An
    operation goes from the socket to the database without waking another thread, which
    on a busy machine costs a scheduling delay each time.
    """

    def __init__(
        self,
        conn: duckdb.DuckDBPyConnection,
        commit_lock: threading.Lock,
        on_end: Callable[[Recording], bool],
    ) -> None:
        """Commit through `conn` (a cursor of its own), holding `commit_lock` around each
        transaction; `on_end(recording)` is called once a recorder left (its work committed)
        and says whether it was the server's last client."""
        self.conn = conn
        self.commit_lock = commit_lock
        self.on_end = on_end
        self.numbers = MessageNumbers(always_stale=is_lake(conn))
        """The numbers of the messages this writer stored; marked stale by the server when
        another session commits (it may have stored messages)."""
        self._queue: queue.SimpleQueue[tuple[str, Recording, list[Op], bool]] = queue.SimpleQueue()
        self._leading = threading.Lock()
        """Held by the thread committing; the others leave their work in the queue."""

    def received(self, recording: Recording, ops: list[Op], replay: bool) -> None:
        """A recorder's operations (in the order it sent them): committed before this
        returns, unless another thread is committing and takes them over."""
        fresh = [op for op in ops if op[0] > recording.received]
        if fresh:
            recording.received = fresh[-1][0]
            self._submit(("ops", recording, fresh, replay))

    def bye(self, recording: Recording) -> None:
        """The recorder is done: once its operations are committed, tell it (and whether it
        was the last client)."""
        self._submit(("bye", recording, [], False))

    def gone(self, recording: Recording) -> None:
        """The recorder vanished: commit what it sent, then close its runs if it is dead."""
        self._submit(("gone", recording, [], False))

    def _submit(self, item: tuple[str, Recording, list[Op], bool]) -> None:
        self._queue.put(item)
        # Whoever holds the lock checks the queue again after letting go: work queued while
        # it committed is never left behind.
        while not self._queue.empty() and self._leading.acquire(blocking=False):
            try:
                self._handle(self._take())
            finally:
                self._leading.release()

    def _take(self) -> list[tuple[str, Recording, list[Op], bool]]:
        """Everything queued (up to a bound on one transaction)."""
        batch = []
        ops = 0
        with contextlib.suppress(queue.Empty):
            while ops < MAX_OPS_PER_COMMIT:
                item = self._queue.get_nowait()
                batch.append(item)
                ops += len(item[2])
        return batch

    def _handle(self, batch: list[tuple[str, Recording, list[Op], bool]]) -> None:
        if not batch:
            return
        work = [_Work(r, ops, replay) for kind, r, ops, replay in batch if kind == "ops"]
        work = [w for w in work if not w.recording.failed]
        if work:
            for recording, error in self._commit(work).items():
                if error is not None:
                    recording.failed = True
                seq = max(op[0] for w in work if w.recording is recording for op in w.ops)
                with contextlib.suppress(OSError):  # gone: the rows are committed all the same
                    recording.acknowledge(("ack", seq, error))
        for kind, recording, _, _ in batch:
            if kind == "bye":
                last = self.on_end(recording)
                with contextlib.suppress(OSError):
                    recording.acknowledge(("bye", last))
            elif kind == "gone":
                alive = pid_alive(recording.pid)
                if not alive:
                    self._close_dead_runs()
                if not self.on_end(recording) and alive:
                    # A process being killed closes its sockets a moment before the kernel
                    # has it ended: look again for a while, without holding up commits.
                    # (When it was the last client the next server to open the store closes
                    # its runs.)
                    watch = threading.Thread(
                        target=self._close_runs_once_dead, args=(recording.pid,), daemon=True
                    )
                    watch.start()

    def _close_dead_runs(self) -> None:
        with self.commit_lock, contextlib.suppress(duckdb.Error):  # closed: the next server will
            transaction(self.conn, lambda: mark_dead_runs_interrupted(self.conn))

    def _close_runs_once_dead(self, pid: int) -> None:
        deadline = time.monotonic() + DYING_WAIT_S
        while time.monotonic() < deadline:
            time.sleep(0.01)
            if not pid_alive(pid):
                self._close_dead_runs()
                return

    def _commit(self, work: list[_Work]) -> dict[Recording, str | None]:
        """Commit every recorder's work in one transaction; when that fails, each
        recorder's alone, so one recorder's bad rows do not fail the others'."""
        recordings = list(dict.fromkeys(w.recording for w in work))
        error = self._transaction(work)
        if error is None or len(recordings) == 1:
            return dict.fromkeys(recordings, error)
        return {r: self._transaction([w for w in work if w.recording is r]) for r in recordings}

    def _transaction(self, work: list[_Work]) -> str | None:
        """One transaction of `work`, retried while it conflicts with another one; the
        error as one line, or None."""
        deadline = time.monotonic() + CONFLICT_WAIT_S
        delay = 0.01
        while True:
            with self.commit_lock:
                error, conflict = _commit(self.conn, work, self.numbers)
            if not conflict or time.monotonic() >= deadline:
                return error
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _commit(
    conn: duckdb.DuckDBPyConnection, work: list[_Work], numbers: MessageNumbers
) -> tuple[str | None, bool]:
    """Insert the work's rows in one transaction (on a lake, done again when another
    writer's commit conflicted with it): (the error as one line or None, whether it was a
    conflict with another transaction worth trying again). Messages the writer stored
    before are not stored again, and every message number is bound (`numbers`)."""
    rows: defaultdict[str, list[Row]] = defaultdict(list)
    plans: list[Plan] = []

    def insert() -> None:
        rows.clear()
        keys: dict[str, int] = {}  # each run's key looked up once per transaction
        for w in work:
            for _, op in w.ops:
                if w.replay and _stored(conn, op):
                    continue
                for table, table_rows in op.items():
                    rows[table].extend(table_rows)
        plans.clear()
        hash_field = COLUMNS["step_messages"].index("hash")
        plan = numbers.plan(conn, rows["messages"], [r[hash_field] for r in rows["step_messages"]])
        plans.append(plan)
        rows["messages"] = plan.messages
        for table in ROW_TYPES:  # a run before its steps
            # A recorder sends each message once (`Recorder.queue_step`), and this writer
            # skips what it stored itself; what another writer or an earlier process stored
            # too is kept twice, not looked for (`inserts.Dedup`).
            given: list[int | None] | None = None
            if table == "messages":
                given = list(plan.drawn)
            elif table == "step_messages":
                given = plan.step_numbers
            # A recorder stores a step's tool results before the request that sends them
            # back: no message holds their outputs yet (not looked for); the next step's
            # transaction stores them once (`output_replays`, below).
            insert_rows(
                conn,
                table,
                rows[table],
                check_stored=False,
                keys=keys,
                numbers=given,
                look_up=False,
            )
        update_runs(conn, rows["run_updates"])
        if (rows["step_replays"] or rows["output_replays"]) and not is_lake(conn):
            # Only where this transaction named the message sent back by a number (the views
            # find it by that number): else, or on a lake (whose update writes files of its
            # own each commit), the reasoning, hash and output stay in full.
            named = {
                row[:3]
                for row, number in zip(rows["step_messages"], plan.step_numbers, strict=True)
                if number is not None
            }
            replay_steps(
                conn,
                [r for r in rows["step_replays"] if (r[0], r[1] + 1, r[2]) in named],
                keys,
            )
            replay_outputs(
                conn,
                [r for r in rows["output_replays"] if (r[0], r[1] + 1, r[3]) in named],
                keys,
            )

    try:
        transaction(conn, insert)
    except Exception as exc:
        return error_line(exc), "conflict" in str(exc).lower()
    numbers.remember(plans[-1])
    return None, False


_ANCHORS = {
    "runs": ("id",),
    "steps": ("run_id", "idx"),
    "tool_results": ("run_id", "step_idx", "call_idx"),
}
"""The key of the first row that tells whether an operation is stored, by table, in the order
an operation's tables are looked at."""


def _stored(conn: duckdb.DuckDBPyConnection, op: Rows) -> bool:
    """Whether a resent operation is already stored. An operation commits whole, so its
    first keyed row tells: the run it begins, the step it records, the result it adds.
    Messages (stored once by hash) and a run's ending (an update) can simply be done again."""
    for table, key in _ANCHORS.items():
        rows = op.get(table)
        if rows:
            values = [rows[0][COLUMNS[table].index(column)] for column in key]
            where = " AND ".join(f"{column} = ?" for column in key)
            if key[0] == RUN_COLUMN:  # found by its run's key (`run_tables.of_run`)
                where = f"run_key = (SELECT key FROM runs WHERE id = ?) AND {where}"
                values = [values[0], *values]
            found = conn.execute(f"SELECT 1 FROM {table} WHERE {where}", values).fetchone()
            return found is not None
    return False


def mark_dead_runs_interrupted(conn: duckdb.DuckDBPyConnection) -> int:
    """Close runs left `running` by recorders on this host that no longer exist.

    A killed process cannot say goodbye; the server says it for it (when its connection
    drops, or when the next server opens the store), and fills in the totals from the steps
    that were durably recorded. A recorder still alive, whichever server it talks to, keeps
    its runs.
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
            steps = (SELECT count(*) FROM step_rows WHERE run_id = runs.id),
            tool_calls = (SELECT count(*) FROM tool_calls WHERE run_id = runs.id),
            tool_errors = (SELECT count(*) FROM tool_results
                           WHERE run_id = runs.id AND error IS NOT NULL),
            {_TOKEN_TOTALS}
        WHERE list_contains(?, id) AND status = 'running'
        """,
        [list(run_ids)],
    )


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (a zombie has ended: no)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed recorder whose parent has not reaped it yet
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True

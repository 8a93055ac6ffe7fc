"""The durable recorder, client side: agents queue rows, the store's server commits them.

The DuckDB connection lives in the store's server (`traces.store.server`), so the inserts and
commits run on another core and never hold this process's GIL, which the event loop driving
every run needs. Agents hand their rows over and await a future that resolves once the
server has committed them, so a step is durable when the agent moves on, yet 64 concurrent
runs (of this recorder and of every other connected to the same server) share one
transaction per batch instead of paying a commit each (group commit;
`traces.store.writer_process`).

One thread connects the event loop to the server without ever blocking it: it sends queued
operations (all that is waiting, in one message) and resolves futures, through
`call_soon_threadsafe`, as the server reports the highest operation committed. If the server
dies (killed), the thread starts or finds another and resends every operation not yet
acknowledged, marked as a replay: the server skips what its predecessor committed without
being able to say so, and nothing is lost or stored twice.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import os
import socket
import threading
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any, NamedTuple

from traces.errors import DatabaseError
from traces.model import (
    RunOutcome,
    RunRecord,
    StepRecord,
    ToolResultRecord,
)
from traces.store import rendezvous
from traces.store.database import Store
from traces.store.rows import (
    holds_output,
    holds_reasoning,
    message_row,
    run_row,
    run_update,
    step_message_rows,
    step_row,
    tool_call_rows,
    tool_result_rows,
)
from traces.store.tables import OutputReplay, StepReplay
from traces.store.writer_process import (
    Op,
    Rows,
    mark_dead_runs_interrupted,
    pid_alive,
)

__all__ = ["Recorder", "mark_dead_runs_interrupted", "pid_alive"]


class _Sent(NamedTuple):
    """What a run's last queued step may have the next request send back."""

    idx: int
    position: int
    """Its `request_message_count`: where the next request holds the message it replays."""
    reasoning: str | None
    reasoning_source: str
    replay_hash: str | None
    replay_holds_reasoning: bool
    """The replayed message was queued with the step (the harness stores it then) and holds
    its reasoning (`rows.holds_reasoning`), as it was then."""


_Waiter = asyncio.Future[None]
"""Who waits for an operation to be committed: an agent's future."""

CLOSE_WAIT_S = 120.0
"""How long closing waits for the server to commit what is queued before giving up on it."""


class Recorder:
    """Durably records runs, steps, messages, tool calls and results into one database file."""

    def __init__(self, path: Store, *, send_delay_s: float = 0.0) -> None:
        """Connect to the store's server (starting one, which creates and migrates the file,
        when none runs); return once it answers. (A lake store takes writers from many
        processes, but recorders of one host still share a server: one group commit.)

        `send_delay_s` > 0: what is queued from the event loop is sent that long after the
        first of it, with everything queued meanwhile (for a caller that never waits for the
        commit, as the proxy: waking the sending thread at each operation makes it take the
        GIL from the event loop in the middle of a relayed request).

        Raises the one-line DatabaseError a server met when it cannot open the database
        (locked by another program, not a trace database...).
        """
        self.path = path
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._known_messages: set[str] = set()
        # Guards the sequence number, `_pending`, `_outbox` and the flags: an operation's
        # number, its place in `_pending` and its place on the wire must follow one order.
        self._lock = threading.Lock()
        self._seq = 0
        self._pending: collections.deque[tuple[int, Rows, _Waiter]] = collections.deque()
        self._outbox: list[Op] = []
        self._failure: str | None = None
        self._closing = False
        self._on_step: dict[str, Callable[[], None]] = {}
        self._sent: dict[str, _Sent] = {}
        """Each open run's last queued step (`_replay_of_previous`)."""
        self._outputs: dict[str, tuple[int, list[tuple[int, str]]]] = {}
        """Each open run's last queued tool results: their step, call and output."""
        self._send_delay_s = send_delay_s
        self._session = rendezvous.connect_or_start(path, rendezvous.RECORD)
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._talk, name="traces-recorder", daemon=True)
        # A daemon thread: the interpreter does not wait for it at exit, so the atexit hook
        # below gets to run and flush what is queued.
        self._thread.start()
        atexit.register(self.close)

    @property
    def writer_pid(self) -> int | None:
        """Process id of the store's server this recorder talks to (to measure or watch it;
        it may have exited, and another may have taken over)."""
        return self._session.server_pid

    # -- public API, called from the event loop -------------------------------------------

    async def begin_run(self, run: RunRecord) -> None:
        """Insert the run as `running`."""
        await self.queue_run(run)

    def queue_run(self, run: RunRecord) -> asyncio.Future[None]:
        """Queue `begin_run`'s row now, without waiting (a proxy must not hold a request for
        a commit); the future resolves once it is committed, before anything queued later."""
        return self._enqueue({"runs": [run_row(run)]})

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
            message_row(h, m) for h, m in new_messages.items() if h not in self._known_messages
        ]
        self._known_messages.update(new_messages)
        rows: Rows = {
            "messages": fresh,
            "steps": [step_row(step)],
            "step_messages": step_message_rows(step),
            "tool_calls": tool_call_rows(step),
        }
        replay = self._replay_of_previous(step, new_messages)
        if replay is not None:
            rows["step_replays"] = [replay]
        outputs = self._outputs_sent(step, new_messages)
        if outputs:
            rows["output_replays"] = outputs
        future = self._enqueue(rows)
        on_step = self._on_step.get(step.run_id)
        if on_step is not None:
            future.add_done_callback(lambda done: done.exception() or on_step())
        return future

    def _replay_of_previous(
        self, step: StepRecord, new_messages: dict[str, dict[str, Any]]
    ) -> StepReplay | None:
        """What `step`'s request sent back of the run's previous step, when it holds that
        step's replayed message or reasoning (else None), and remember `step` for the next.

        A recorder stores a step before the request that sends it back, so it learns one step
        later what an import knows when it writes the step (migration 17): the writer then
        stores the previous step's reasoning and replayed hash once, in this step's
        transaction (`writer_process`). Compared here, in Python, as an import compares."""
        previous = self._sent.get(step.run_id)
        replay_hash = step.replay_message_hash
        replay = new_messages.get(replay_hash) if replay_hash is not None else None
        self._sent[step.run_id] = _Sent(
            step.index,
            step.request_message_count,
            step.reasoning,
            step.reasoning_source,
            replay_hash,
            replay is not None and holds_reasoning(replay, step.reasoning, step.reasoning_source),
        )
        if previous is None or step.index != previous.idx + 1:
            return None
        offset = previous.position - step.request_prefix
        if not 0 <= offset < len(step.request_new_hashes):
            return None
        digest = step.request_new_hashes[offset]
        replayed = digest == previous.replay_hash
        message = new_messages.get(digest)
        if message is not None:
            reasoning = holds_reasoning(message, previous.reasoning, previous.reasoning_source)
        else:  # the same message (the same hash), queued with the previous step
            reasoning = replayed and previous.replay_holds_reasoning
        if not (replayed or reasoning):
            return None
        return StepReplay(step.run_id, previous.idx, previous.position, replayed, reasoning)

    def _outputs_sent(
        self, step: StepRecord, new_messages: dict[str, dict[str, Any]]
    ) -> list[OutputReplay]:
        """The previous step's tool results whose output `step`'s request added in a tool
        message, each at the first such position (as `tables.TOOL_OUTPUT_POSITION` finds it
        for an import): a recorder stores a result before the request that sends it back."""
        queued = self._outputs.pop(step.run_id, None)
        if queued is None or queued[0] != step.index - 1:
            return []
        added = [
            (step.request_prefix + offset, new_messages.get(digest))
            for offset, digest in enumerate(step.request_new_hashes)
        ]
        found = []
        for call_idx, output in queued[1]:
            position = next(
                (p for p, m in added if m is not None and holds_output(m, output)), None
            )
            if position is not None:
                found.append(OutputReplay(step.run_id, queued[0], call_idx, position))
        return found

    def follow_steps(self, run_id: str, on_step: Callable[[], None] | None) -> None:
        """Call `on_step()` (on the event loop) each time a step of the run is committed;
        None stops."""
        if on_step is None:
            self._on_step.pop(run_id, None)
        else:
            self._on_step[run_id] = on_step

    async def record_tool_results(
        self, run_id: str, step_index: int, results: list[ToolResultRecord]
    ) -> None:
        """Insert what the tools of one step returned."""
        self._outputs[run_id] = (step_index, [(r.index, r.output) for r in results])
        await self._enqueue({"tool_results": tool_result_rows(run_id, step_index, results)})

    async def end_run(self, run_id: str, outcome: RunOutcome) -> None:
        """Write the run's final status, termination and totals."""
        self._sent.pop(run_id, None)
        self._outputs.pop(run_id, None)
        await self._enqueue({"run_updates": [run_update(run_id, outcome)]})

    def close(self) -> None:
        """Flush everything queued and leave the server; when this was its last client,
        return once it has closed the database file."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        atexit.unregister(self.close)
        self._wake()
        self._thread.join(CLOSE_WAIT_S)
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the conversation with the server -------------------------------------------------------

    def _enqueue(self, rows: Rows) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._put(rows, future, loop)
        return future

    def _put(
        self, rows: Rows, waiter: _Waiter, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        with self._lock:
            if self._failure is not None:
                raise DatabaseError(f"{self.path}: recording failed: {self._failure}")
            if self._closing:
                raise DatabaseError(f"{self.path}: the recorder is closed")
            self._seq += 1
            self._pending.append((self._seq, rows, waiter))
            # The thread takes the whole outbox at once: one wake for a non-empty outbox is
            # enough (a write to the pipe for each operation cost a proxy 3% of its CPU).
            idle = not self._outbox
            self._outbox.append((self._seq, rows))
        if not idle:
            return
        if loop is not None and self._send_delay_s > 0:
            loop.call_later(self._send_delay_s, self._wake_later)
        else:
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # the thread is gone (failed): nobody to wake
            os.write(self._wake_write, b"\0")

    def _wake_later(self) -> None:
        # Once closing, `close` has woken the thread itself (and may have closed the pipe,
        # whose descriptor number another file may hold by now).
        if not self._closing:
            self._wake()

    def _talk(self) -> None:
        """Send what is queued, resolve what is acknowledged; take another server when this
        one goes away; once closing, say goodbye after the last operation."""
        said_bye = False
        while True:
            conn = self._session.conn
            try:
                ready = wait([conn, self._wake_read])
                if self._wake_read in ready:
                    os.read(self._wake_read, 4096)
                with self._lock:
                    ops, self._outbox = self._outbox, []
                    closing = self._closing
                if ops:
                    conn.send(("ops", ops, False))
                if closing and not said_bye:
                    conn.send(("bye",))
                    said_bye = True
                while conn.poll():
                    message = conn.recv()
                    if message[0] == "ack":
                        self._acknowledged(message[1], message[2])
                    elif message[0] == "bye":
                        self._session.close(last=bool(message[1]))
                        return
            except (EOFError, OSError):
                if not self._take_over():
                    return
                said_bye = False

    def _acknowledged(self, seq: int, error: str | None) -> None:
        with self._lock:
            done = _pop_until(self._pending, seq)
            if error is not None and self._failure is None:
                self._failure = error
        _settle(done, None if error is None else f"{self.path}: recording failed: {error}")

    def _take_over(self) -> bool:
        """The server went away: reach (or start) another and resend every operation it did
        not acknowledge. False, with every waiter failed, when none can be had."""
        with contextlib.suppress(OSError):
            self._session.conn.close()
        try:
            session = rendezvous.connect_or_start(self.path, rendezvous.RECORD)
            with self._lock:
                # Everything not acknowledged, queued or not: the outbox is part of it.
                replay = [(seq, rows) for seq, rows, _ in self._pending]
                self._outbox = []
            if replay:
                session.conn.send(("ops", replay, True))
        except (DatabaseError, OSError) as exc:
            reason = f"the store's server exited and no other could take over: {exc}"
            with self._lock:
                done = _pop_until(self._pending, self._seq)
                if self._failure is None:
                    self._failure = reason
            _settle(done, f"{self.path}: recording failed: {self._failure}")
            return False
        self._session = session
        return True


def _pop_until(pending: collections.deque[tuple[int, Rows, _Waiter]], seq: int) -> list[_Waiter]:
    done: list[_Waiter] = []
    while pending and pending[0][0] <= seq:
        done.append(pending.popleft()[2])
    return done


def _settle(waiters: list[_Waiter], error: str | None) -> None:
    """Wake the waiters from the recorder's thread: one callback per event loop, not per
    future."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for waiter in waiters:
        by_loop.setdefault(waiter.get_loop(), []).append(waiter)
    for loop, futures in by_loop.items():
        # A closed loop means nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle_futures, futures, error)


def _settle_futures(futures: list[asyncio.Future[None]], error: str | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(DatabaseError(error))

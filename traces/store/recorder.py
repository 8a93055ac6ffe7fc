"""The durable recorder, parent side: agents queue rows, a writer process commits them.

The DuckDB connection lives in a child process (`traces.store.writer_process`), so the
inserts and commits run on another core and never hold this process's GIL, which the event
loop driving every run needs. Agents hand their rows over and await a future that resolves
once the child has committed them, so a step is durable when the agent moves on, yet 64
concurrent runs share one transaction per batch instead of paying a commit each (group
commit).

Two threads connect the event loop to the child without ever blocking it: a sender that
takes queued operations from a `SimpleQueue` and writes them to the pipe (it may wait there
while the child is busy), and an ack reader that resolves futures, through
`call_soon_threadsafe`, as the child reports the highest operation committed.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from traces import interrupts
from traces.errors import DatabaseError
from traces.model import (
    RunOutcome,
    RunRecord,
    StepRecord,
    ToolResultRecord,
)
from traces.processes import child_env
from traces.store import lake
from traces.store.database import Store
from traces.store.rows import (
    message_row,
    run_row,
    run_update,
    step_message_rows,
    step_row,
    tool_call_rows,
    tool_result_rows,
)
from traces.store.writer_process import (
    Op,
    Rows,
    mark_dead_runs_interrupted,
    pid_alive,
)

__all__ = ["Recorder", "mark_dead_runs_interrupted", "pid_alive"]

_Waiter = asyncio.Future[None]
"""Who waits for an operation to be committed: an agent's future."""


class Recorder:
    """Durably records runs, steps, messages, tool calls and results into one database file."""

    def __init__(self, path: Store) -> None:
        """Start the writer process; return once it has opened (created, migrated) the file.

        Raises the one-line DatabaseError the child met when it cannot open the database
        (locked by another process, not a trace database...).
        """
        self.path = path
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._known_messages: set[str] = set()
        # Guards the sequence number, `_pending` and the flags: an operation's number, its
        # place in `_pending` and its place in the pipe must all follow the same order.
        self._lock = threading.Lock()
        self._seq = 0
        self._pending: collections.deque[tuple[int, _Waiter]] = collections.deque()
        self._failure: str | None = None
        self._closing = False
        self._outbox: queue.SimpleQueue[Op | None] = queue.SimpleQueue()

        # Born with Ctrl-C and SIGTERM blocked (and in a process group of its own), so that
        # none reaches the writer while it imports; it ignores them from then on. The parent
        # alone decides when recording ends.
        with interrupts.starting_children():
            self._process, self._ops, self._acks = _start_writer(path)
        ready, detail = False, ""
        try:
            status, detail = self._acks.recv()
            ready = status == "ready"
        except (EOFError, OSError):
            detail = f"{path}: the writer process exited before opening the database"
        finally:
            if not ready:  # a failure, or Ctrl-C while waiting: the child must not linger
                self._ops.close()  # its signal to stop once it has the file open
                self._acks.close()
                self._process.wait()
        if not ready:
            raise DatabaseError(str(detail))

        self._sender = threading.Thread(target=self._send_loop, name="traces-recorder-send")
        self._acker = threading.Thread(target=self._ack_loop, name="traces-recorder-acks")
        # Daemon threads: the interpreter does not wait for them at exit, so the atexit hook
        # below gets to run and flush what is queued.
        for thread in (self._sender, self._acker):
            thread.daemon = True
            thread.start()
        atexit.register(self.close)

    @property
    def writer_pid(self) -> int | None:
        """Process id of the writer process (to measure or watch it; it may have exited)."""
        return self._process.pid

    # -- public API, called from the event loop -------------------------------------------

    async def begin_run(self, run: RunRecord) -> None:
        """Insert the run as `running`."""
        await self._enqueue({"runs": [run_row(run)]})

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
        return self._enqueue(rows)

    async def record_tool_results(
        self, run_id: str, step_index: int, results: list[ToolResultRecord]
    ) -> None:
        """Insert what the tools of one step returned."""
        await self._enqueue({"tool_results": tool_result_rows(run_id, step_index, results)})

    async def end_run(self, run_id: str, outcome: RunOutcome) -> None:
        """Write the run's final status, termination and totals."""
        await self._enqueue({"run_updates": [run_update(run_id, outcome)]})

    def close(self) -> None:
        """Flush everything queued, stop the writer process and wait for it to exit."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        atexit.unregister(self.close)
        self._outbox.put(None)  # behind everything already queued
        self._sender.join()  # everything is in the pipe, and the pipe is closed
        self._acker.join()  # the child acknowledged it all and closed its end
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:  # hung: nothing more will come from it
            self._process.kill()
            self._process.wait()
        self._acks.close()

    # -- the pipe to the writer process -------------------------------------------------------

    def _enqueue(self, rows: Rows) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put(rows, future)
        return future

    def _put(self, rows: Rows, waiter: _Waiter) -> None:
        with self._lock:
            if self._failure is not None:
                raise DatabaseError(f"{self.path}: recording failed: {self._failure}")
            if self._closing:
                raise DatabaseError(f"{self.path}: the recorder is closed")
            self._seq += 1
            self._pending.append((self._seq, waiter))
            self._outbox.put((self._seq, rows))

    def _send_loop(self) -> None:
        """Write queued operations to the pipe, all that is waiting in one message."""
        stop = False
        while not stop:
            ops: list[Op] = []
            item = self._outbox.get()
            while True:
                if item is None:
                    stop = True
                    break
                ops.append(item)
                try:
                    item = self._outbox.get_nowait()
                except queue.Empty:
                    break
            if ops:
                try:
                    self._ops.send(ops)
                except OSError:
                    break  # the writer is gone; the ack reader fails what is pending
        self._ops.close()  # EOF tells the writer to commit what it has and exit

    def _ack_loop(self) -> None:
        """Resolve waiters as the writer reports commits; fail them all if it goes away."""
        try:
            while True:
                seq, error = self._acks.recv()
                with self._lock:
                    done = _pop_until(self._pending, seq)
                    if error is not None and self._failure is None:
                        self._failure = error
                _settle(done, None if error is None else f"{self.path}: recording failed: {error}")
        except (EOFError, OSError):
            pass
        # The writer exited. After close() it has committed everything it was sent, so
        # nothing is pending; otherwise it died, and nobody may wait for it forever.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=1)
        reason = f"the writer process exited unexpectedly (exit code {self._process.returncode})"
        with self._lock:
            done = _pop_until(self._pending, self._seq)
            if self._failure is None and not self._closing:
                self._failure = reason
        _settle(done, f"{self.path}: recording failed: {self._failure or reason}")


def _start_writer(path: Store) -> tuple[subprocess.Popen[bytes], Connection, Connection]:
    """Start the writer process on `path`: the process, our end of the operations pipe (to
    write) and our end of the acknowledgements pipe (to read)."""
    # A fresh interpreter (`python -m`), not a fork: this process already runs threads (the
    # event loop's helpers, an embedded simulator), and a forked child would inherit their
    # locks in any state. Nor multiprocessing's spawn, which re-runs the main module (the
    # `traces` console script: every command's imports) in the child.
    ops_read, ops_write = os.pipe()
    acks_read, acks_write = os.pipe()
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "traces.store.writer",
                str(path),
                str(ops_read),
                str(acks_write),
            ],
            pass_fds=(ops_read, acks_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # stdout belongs to the command's output
            env=lake.child_env(path, child_env()),
            # Its own process group: a Ctrl-C at the terminal reaches only the parent, which
            # then records its runs as interrupted through this writer; the writer stops
            # when the parent closes (or, killed, loses) its end of the operations pipe.
            process_group=0,
        )
    except BaseException:
        for fd in (ops_read, ops_write, acks_read, acks_write):
            os.close(fd)
        raise
    # The child holds its own ends now. Dropping ours is what lets each side see EOF when
    # the other one goes away (a killed parent, a crashed writer).
    os.close(ops_read)
    os.close(acks_write)
    return process, Connection(ops_write, readable=False), Connection(acks_read, writable=False)


def _pop_until(pending: collections.deque[tuple[int, _Waiter]], seq: int) -> list[_Waiter]:
    done: list[_Waiter] = []
    while pending and pending[0][0] <= seq:
        done.append(pending.popleft()[1])
    return done


def _settle(waiters: list[_Waiter], error: str | None) -> None:
    """Wake the waiters from the ack thread: one callback per event loop, not per future."""
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

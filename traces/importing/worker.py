"""`python -m traces.importing.worker JOBS_FD RESULTS_FD`: a worker of a parallel import.

Started by `parallel.WorkerPool` with the two pipe ends it inherits. It reads each file it is
given (a `parallel.Job`) whole, builds the lines it owns (`ownership`) and sends their rows
back as columns, a batch at a time, with how far it has read.
"""

from __future__ import annotations

import gc
import os
import queue
import sys
import threading
import traceback
from collections import defaultdict
from multiprocessing.connection import Connection
from typing import Any

from traces import interrupts
from traces.errors import TracesError
from traces.importing.lines import numbered_lines
from traces.importing.ownership import line_owner, owner
from traces.importing.parallel import Job
from traces.importing.reading import LineReader, RefusedLine
from traces.importing.toolsets import ToolSets

PROGRESS_BYTES = 4 << 20
"""A worker reports how far it has read at least this often, rows or not: the order-bound
releases (messages, skipped lines, progress) wait for the slowest worker."""
_OUTBOX = 4
"""Batches a worker holds while the importing process is busy inserting."""


class _Batch:
    """Rows built since the last batch was sent, by table; message rows with their line."""

    def __init__(self) -> None:
        self.tables: defaultdict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self.rows = 0
        self.line = 0
        self.message_lines: list[int] = []

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        self.tables[table].append(row)
        self.rows += 1
        if table == "messages":
            self.message_lines.append(self.line)

    def take(self) -> tuple[dict[str, list[list[Any]]], list[int]]:
        """The rows as one list per column, and the lines of the message rows."""
        columns = {
            table: [list(column) for column in zip(*rows, strict=True)]
            for table, rows in self.tables.items()
        }
        lines = self.message_lines
        self.tables = defaultdict(list)
        self.rows = 0
        self.message_lines = []
        return columns, lines


class _Outbox:
    """Sends a worker's messages from a thread of its own, so building goes on while the
    importing process is busy inserting."""

    def __init__(self, results: Connection) -> None:
        self.results = results
        self.queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=_OUTBOX)
        self.thread = threading.Thread(target=self._send, name="import-outbox", daemon=True)
        self.thread.start()

    def put(self, message: tuple[Any, ...]) -> None:
        self.queue.put(message)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self.results.close()

    def _send(self) -> None:
        while (message := self.queue.get()) is not None:
            try:
                self.results.send(message)
            except OSError:
                os._exit(1)  # the importing process is gone: nothing left to do


def serve(jobs_fd: int, results_fd: int) -> None:
    """A worker's life: read the jobs sent on `jobs_fd` until it closes, answering on
    `results_fd`."""
    interrupts.ignore_in_child()  # the importing process decides when a worker stops
    gc.disable()  # as in the importing process: parsed JSON has no cycles
    jobs = Connection(jobs_fd, writable=False)
    outbox = _Outbox(Connection(results_fd, readable=False))
    tool_sets = ToolSets()
    known: set[str] = set()
    while True:
        try:
            job = jobs.recv()
        except (EOFError, OSError):
            break
        if job is None:
            break
        try:
            _work(job, outbox, tool_sets, known)
        except RefusedLine as refused:
            outbox.put(("refused", refused.line, str(refused)))
        except TracesError as err:
            outbox.put(("error", str(err)))
        except Exception:
            outbox.put(("failed", traceback.format_exc()))
    outbox.close()
    # Everything is sent: skip tearing down a heap of a million objects, the importing
    # process is waiting for this one to end.
    os._exit(0)


def _work(job: Job, outbox: _Outbox, tool_sets: ToolSets, known: set[str]) -> None:
    batch = _Batch()
    skipped: list[tuple[int, str]] = []
    reader = LineReader(
        batch,
        job.path,
        job.sha256,
        job.import_id,
        job.options,
        job.now,
        known,
        tool_sets,
        lambda line: skipped.append((line.line, line.reason)),
        line_format=job.line_format,
        host=job.host,
        pid=job.pid,
        whole_file=False,
    )
    me, workers = job.index, job.workers
    offset = sent = job.start_offset
    number = job.start_line - 1
    for number, raw in numbered_lines(job.path, job.start_line, job.start_offset):
        offset += len(raw)
        if not raw.strip():
            continue
        if line_owner(raw, number, workers, job.line_format) == me:
            batch.line = number
            logged = reader.read(number, raw)
            group = None if logged is None else logged.group
            if group is not None and owner(group, number, workers) != me:
                raise RuntimeError(f"line {number}: conversation label misread")
        if batch.rows >= job.flush_rows or offset - sent >= PROGRESS_BYTES:
            outbox.put(("rows", number, offset, *batch.take(), skipped.copy()))
            skipped.clear()
            sent = offset
    share = reader.finish()
    outbox.put(("done", number, offset, *batch.take(), skipped.copy(), share))


def main() -> None:
    """Serve jobs until the importing process closes the job pipe."""
    serve(int(sys.argv[1]), int(sys.argv[2]))


if __name__ == "__main__":
    main()

"""Reading a large file in worker processes, split by conversation, while this process inserts.

Every worker reads the whole file but builds only the lines it owns (`ownership`): a run is
built by one worker from all of its lines in file order, so its steps, prefixes and tool
results are the ones a single process builds, and so is its id (a run is named after its
first line).

Workers send their rows back as columns, a batch at a time, and this process inserts them
in the import's one transaction. Whatever depends on file order is released only once every
worker has read past it: skipped lines (to `on_skip` and the report, in line order), the
first refused line (the error a single process raises), progress, and the rows of
`messages`, which runs share: the first line that sends a message decides its stored text.
The other tables' rows wait with them: a step's message list names each message by the
number its stored row drew (`step_message_keys.seq`, looked up when the row is inserted),
so a batch goes to the insert only after every message its lines sent.

Workers are fresh interpreters (`python -m traces.importing.worker`: no fork of a process
that may run threads, and none of the command line's imports), started once per import and
given each large file in turn. They ignore Ctrl-C: this process stops them on any error or
interrupt before it rolls back, and a worker whose parent is gone exits at its next write.
"""

from __future__ import annotations

import heapq
import os
import socket
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from traces import interrupts
from traces.importing import writer
from traces.importing.lines import ImportFileError, LineFormat
from traces.importing.reading import (
    FileShare,
    ImportOptions,
    LineReader,
    ProgressCallback,
    RefusedLine,
    SkippedLine,
)
from traces.importing.writer import ImportSink
from traces.piped_child import start_piped_child

MAX_LEAD = 128 << 20
"""How far (bytes) a worker may read ahead of the slowest before its batches wait: bounds the
message rows held back for file order."""
_DONE = float("inf")
_Held = TypeVar("_Held", bound=tuple[Any, ...])


@dataclass(frozen=True)
class Job:
    """One file for one worker: the lines from `start_line` (at byte `start_offset`) on."""

    path: Path
    sha256: str
    import_id: str
    options: ImportOptions
    now: datetime
    line_format: LineFormat
    start_line: int
    start_offset: int
    host: str
    pid: int
    index: int
    workers: int
    flush_rows: int
    """Rows a worker sends at a time: a quarter of an insert, so that inserting starts
    early (this process gathers them into inserts of `writer.FLUSH_ROWS`)."""


class _Worker:
    """One worker process and the two pipes to it."""

    def __init__(self) -> None:
        # It ignores Ctrl-C and SIGTERM (`serve`): this process stops it.
        self.child = start_piped_child("traces.importing.worker")
        self.process = self.child.process
        self.jobs, self.results = self.child.jobs, self.child.results

    def send(self, path: Path, job: Job) -> None:
        """Give the worker a file to read."""
        try:
            self.jobs.send(job)
        except OSError:
            raise self.stopped(path) from None

    def stopped(self, path: Path) -> ImportFileError:
        """The error of a worker that is gone (it says why on stderr, if it could)."""
        return ImportFileError(
            f"{path}: an import worker stopped (exit code {self.process.wait()})"
        )

    def stop(self, at_once: bool) -> None:
        """End the process: at once, or when it has read the end of its job pipe."""
        self.child.stop(0 if at_once else 5)


class WorkerPool:
    """Worker processes for the large files of one import. A context manager: leaving it
    stops them (at once when an exception leaves it), so none outlives the import."""

    def __init__(self, workers: int) -> None:
        """Start `workers` processes (they import while the caller goes on)."""
        self.workers: list[_Worker] = []
        try:
            # A Ctrl-C meanwhile is raised once all are started, so that all are stopped.
            with interrupts.starting_children():
                for _ in range(workers):
                    self.workers.append(_Worker())
        except BaseException:
            self.close(at_once=True)
            raise

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(at_once=exc_type is not None)

    def close(self, at_once: bool = False) -> None:
        """Stop every worker: idle ones exit by themselves, busy ones are killed."""
        for worker in self.workers:
            worker.stop(at_once)
        self.workers.clear()

    def read(
        self,
        reader: LineReader,
        sink: ImportSink,
        start_line: int,
        start_offset: int,
        line_format: LineFormat,
        on_progress: ProgressCallback | None,
    ) -> FileShare:
        """Have the workers read `reader`'s file from `start_line` on into `sink`; what the
        lines became. Raises what a single process raises for the same file."""
        host, pid = socket.gethostname(), os.getpid()
        for index, worker in enumerate(self.workers):
            worker.send(
                reader.path,
                Job(
                    path=reader.path,
                    sha256=reader.digest,
                    import_id=reader.import_id,
                    options=reader.options,
                    now=reader.now,
                    line_format=line_format,
                    start_line=start_line,
                    start_offset=start_offset,
                    host=host,
                    pid=pid,
                    index=index,
                    workers=len(self.workers),
                    flush_rows=writer.FLUSH_ROWS // 4,
                ),
            )
        return _Collector(self.workers, reader, sink, start_offset, on_progress).run()


@dataclass
class _Progress:
    """How far one worker has got with the current file."""

    line: float
    """Every line up to this one is read (and sent); `_DONE` once the worker stopped."""
    offset: int
    messages: deque[tuple[int, str, str, str]]
    """Message rows (line, hash, role, body) held until every worker is past their line."""
    batches: deque[tuple[float, int, dict[str, list[list[Any]]]]]
    """The other tables' rows of each batch (its last line, the worker, its columns by table),
    held until every worker is past that line and its messages are handed on."""
    skipped: deque[tuple[int, str]]
    share: FileShare | None = None


class _Collector:
    """Receives the workers' batches for one file, inserts them, and releases in file order
    what must come out in file order."""

    def __init__(
        self,
        workers: list[_Worker],
        reader: LineReader,
        sink: ImportSink,
        start_offset: int,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.workers = workers
        self.reader = reader
        self.sink = sink
        self.on_progress = on_progress
        self.reported = start_offset
        self.progress = [_Progress(0, start_offset, deque(), deque(), deque()) for _ in workers]
        self.refused: RefusedLine | None = None
        self.messages: list[list[Any]] = [[], [], []]

    def run(self) -> FileShare:
        progress = self.progress
        while any(p.line != _DONE for p in progress):
            slowest = min(p.offset for p in progress if p.line != _DONE)
            waiting = {
                worker.results: index
                for index, (worker, p) in enumerate(zip(self.workers, progress, strict=True))
                if p.line != _DONE and p.offset <= slowest + MAX_LEAD
            }
            for ready in wait(list(waiting)):
                assert isinstance(ready, Connection)
                self._take(waiting[ready], ready)
            self._release()
        self._flush_messages()
        if self.refused is not None:
            raise self.refused
        shares = [p.share for p in progress if p.share is not None]
        return FileShare(
            lines=sum(s.lines for s in shares),
            exchanges=sum(s.exchanges for s in shares),
            runs=list(heapq.merge(*(s.runs for s in shares))),
            defaulted=sum(s.defaulted for s in shares),
        )

    def _take(self, index: int, results: Connection) -> None:
        try:
            message = results.recv()
        except (EOFError, OSError):
            raise self.workers[index].stopped(self.reader.path) from None
        kind = message[0]
        p = self.progress[index]
        if kind in ("rows", "done"):
            _, line, offset, tables, message_lines, skipped = message[:6]
            columns = tables.pop("messages", None)
            if columns:
                p.messages.extend(zip(message_lines, *columns, strict=True))
            if tables:
                p.batches.append((line, index, tables))
            p.skipped.extend(skipped)
            p.offset = offset
            p.line = line
            if kind == "done":
                p.share = message[6]
                p.line = _DONE
        elif kind == "refused":
            _, line, text = message
            if self.refused is None or line < self.refused.line:
                self.refused = RefusedLine(text, line)
            p.line = _DONE
        elif kind == "error":
            raise ImportFileError(message[1])
        else:
            raise RuntimeError(f"an import worker failed:\n{message[1]}")

    def _release(self) -> None:
        """Hand on what every worker is past, in file order."""
        past = min(p.line for p in self.progress)
        if self.refused is not None and past >= self.refused.line:
            raise self.refused  # no worker can find an earlier malformed line any more
        for line, reason in heapq.merge(*(_upto(p.skipped, past) for p in self.progress)):
            self.reader.on_skip(SkippedLine(line, reason))
        known = self.reader.known
        hashes, roles, bodies = self.messages
        for _, digest, role, body in heapq.merge(*(_upto(p.messages, past) for p in self.progress)):
            if digest not in known:
                known.add(digest)
                hashes.append(digest)
                roles.append(role)
                bodies.append(body)
        batches = list(heapq.merge(*(_upto(p.batches, past) for p in self.progress)))
        if batches or len(hashes) >= writer.FLUSH_ROWS // 4:
            # Into the sink before the rows naming them: it inserts messages first.
            self._flush_messages()
        for _, _, tables in batches:
            for table, columns in tables.items():
                self.sink.add_columns(table, columns)
        offset = min(p.offset for p in self.progress)
        if offset > self.reported:
            if self.on_progress is not None:
                self.on_progress(offset - self.reported)
            self.reported = offset

    def _flush_messages(self) -> None:
        if self.messages[0]:
            self.sink.add_columns("messages", self.messages)
            self.messages = [[], [], []]


def _upto(held: deque[_Held], line: float) -> list[_Held]:
    """Take the held items (in line order) up to `line`."""
    taken = []
    while held and held[0][0] <= line:
        taken.append(held.popleft())
    return taken

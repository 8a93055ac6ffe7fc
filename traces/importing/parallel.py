"""Reading a large file in worker processes, split by conversation, while this process inserts.

Every worker reads the whole file but builds only the lines it owns: those of the
conversations it owns (by a hash of their label) and every n-th of the lines that belong to
no conversation (one-step runs: every line of a K2-Vendor-Verifier file). A run is built by
one worker from all of its lines in file order, so its steps, prefixes and tool results are
the ones a single process builds, and so is its id (a run is named after its first line).
The label is read off the raw line when that is provably what parsing it would give (see
`conversation_label`), by parsing the line otherwise; each worker checks the labels of the
lines it parses against its share.

Workers send their rows back as columns, a batch at a time, and this process inserts them
in the import's one transaction. Whatever depends on file order is released only once every
worker has read past it: skipped lines (to `on_skip` and the report, in line order), the
first refused line (the error a single process raises), progress, and the rows of
`messages`, which runs share: the first line that sends a message decides its stored text.

Workers are fresh interpreters (`python -m traces.importing.worker`: no fork of a process
that may run threads, and none of the command line's imports), started once per import and
given each large file in turn. They ignore Ctrl-C: this process stops them on any error or
interrupt before it rolls back, and a worker whose parent is gone exits at its next write.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import traceback
import zlib
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from traces import interrupts
from traces.errors import TracesError
from traces.importing import writer
from traces.importing.lines import ImportFileError, LineFormat, numbered_lines
from traces.importing.reading import (
    FileShare,
    ImportOptions,
    LineReader,
    ProgressCallback,
    RefusedLine,
    SkippedLine,
)
from traces.importing.toolsets import ToolSets
from traces.importing.writer import ImportSink
from traces.processes import child_env

PROGRESS_BYTES = 4 << 20
"""A worker reports how far it has read at least this often, rows or not: the order-bound
releases (messages, skipped lines, progress) wait for the slowest worker."""
MAX_LEAD = 128 << 20
"""How far (bytes) a worker may read ahead of the slowest before its batches wait: bounds the
message rows held back for file order."""
_OUTBOX = 4
"""Batches a worker holds while the importing process is busy inserting."""
_DONE = float("inf")
_Held = TypeVar("_Held", bound=tuple[Any, ...])

_KEY = b'"conversation"'
_LETTER_ESCAPE = re.compile(rb"\\u00[67]")
"""How a JSON string can spell a letter of `conversation` (a-v) without writing it."""
_INTEGER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?=[ \t\r\n,}]|$)")
_JSON_SPACE = b" \t\r\n"


# -- who reads which line ---------------------------------------------------------------------


def conversation_label(raw: bytes) -> str | None:
    """The run label `formats.read_exchange_line` takes from a line: its top-level
    `conversation` (a string, or an integer as text), None when there is none.

    Read off the bytes when the line holds exactly one key spelled `"conversation"`: in UTF-8
    without `\\u` escapes of ASCII letters (the only other spelling of that key), a key named
    so appears literally, so a single one is either the top-level key or a nested one in a
    line without a top-level label, whose lines any worker may read. Anything else is parsed.
    A label of a line that turns out malformed does not matter (it makes no run).
    """
    if raw[:1] in (b"\xff", b"\xfe") or b"\x00" in raw[:4]:  # UTF-16/32 for `json.loads`
        return _parsed_label(raw)
    if _LETTER_ESCAPE.search(raw):
        return _parsed_label(raw)
    value_at: int | None = None
    start = 0
    while (at := raw.find(_KEY, start)) >= 0:
        start = at + len(_KEY)
        if _escaped(raw, at):
            continue  # inside a string: `\"conversation"`
        colon = _skip_space(raw, start)
        if raw[colon : colon + 1] != b":":
            continue  # a value, not a key
        if value_at is not None:
            return _parsed_label(raw)  # two keys: only parsing tells the top-level one
        value_at = _skip_space(raw, colon + 1)
    return None if value_at is None else _value_label(raw, value_at)


def owner(label: str | None, line: int, workers: int) -> int:
    """The worker (0-based) that reads a line: by its conversation's label, else by number."""
    if label is None:
        return line % workers
    return zlib.crc32(label.encode("utf-8", "surrogatepass")) % workers


def _escaped(raw: bytes, at: int) -> bool:
    """Whether the byte at `at` follows an odd run of backslashes."""
    slashes = 0
    while at > slashes and raw[at - slashes - 1] == 0x5C:
        slashes += 1
    return slashes % 2 == 1


def _skip_space(raw: bytes, at: int) -> int:
    while at < len(raw) and raw[at] in _JSON_SPACE:
        at += 1
    return at


def _value_label(raw: bytes, at: int) -> str | None:
    if raw[at : at + 1] == b'"':
        end = at + 1
        while (end := raw.find(b'"', end)) >= 0 and _escaped(raw, end):
            end += 1
        if end < 0:
            return None  # unterminated: the line is malformed
        token = raw[at : end + 1]
        try:
            value = json.loads(token) if b"\\" in token else token[1:-1].decode()
        except ValueError:
            return None
        return value if isinstance(value, str) else None
    match = _INTEGER.match(raw, at)
    if match is None:
        return None  # null, or not a string or an integer (a malformed line)
    try:
        return str(int(match.group()))
    except ValueError:  # beyond Python's digit limit, as `json.loads` refuses it too
        return None


def _parsed_label(raw: bytes) -> str | None:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    value = obj.get("conversation") if isinstance(obj, dict) else None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


# -- the importing process --------------------------------------------------------------------


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
        jobs_read, jobs_write = os.pipe()
        results_read, results_write = os.pipe()
        try:
            # Born with Ctrl-C and SIGTERM blocked: none reaches the worker while it imports;
            # it ignores them from then on (`serve`), and this process stops it.
            with interrupts.starting_children():
                self.process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "traces.importing.worker",
                        str(jobs_read),
                        str(results_write),
                    ],
                    pass_fds=(jobs_read, results_write),
                    stdin=subprocess.DEVNULL,
                    env=child_env(),
                )
        except BaseException:
            for fd in (jobs_read, jobs_write, results_read, results_write):
                os.close(fd)
            raise
        os.close(jobs_read)
        os.close(results_write)
        self.jobs = Connection(jobs_write, readable=False)
        self.results = Connection(results_read, writable=False)

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
        self.jobs.close()
        if not at_once:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.results.close()


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
        self.progress = [_Progress(0, start_offset, deque(), deque()) for _ in workers]
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
            for table, columns in tables.items():
                if table == "messages":
                    p.messages.extend(zip(message_lines, *columns, strict=True))
                else:
                    self.sink.add_columns(table, columns)
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
        if len(hashes) >= writer.FLUSH_ROWS // 4:
            self._flush_messages()
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


# -- a worker ---------------------------------------------------------------------------------


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
    by_line = job.line_format == "k2vv"  # no conversations: every line is a run
    offset = sent = job.start_offset
    number = job.start_line - 1
    for number, raw in numbered_lines(job.path, job.start_line, job.start_offset):
        offset += len(raw)
        if not raw.strip():
            continue
        mine = number % workers if by_line else owner(conversation_label(raw), number, workers)
        if mine == me:
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

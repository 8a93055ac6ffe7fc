"""Analyzing many runs in worker processes, one per core, and storing their findings at once.

The checks are Python over Python records: one process analyzes about 12,000 steps a second
here, whatever DuckDB does. So a large analysis (`traces analyze` over a whole store) runs in
worker processes instead (`python -m analyzer.checks.worker`: fresh interpreters, no fork of
a process that may run threads). DuckDB lets several processes read a file that none writes:
each worker opens the store read-only, takes a chunk of runs whenever it finished the last
one, and appends their findings, ledgers and summaries to a database file of its own. When
all are done, this process opens the store for writing and, in one transaction, replaces the
runs' findings, ledgers and summaries with the workers' rows, all in SQL.

The store is only written in that last transaction: an error, a worker that dies or Ctrl-C
before it leaves the store as it was, and the workers' files are removed either way. While
the workers read, nothing can write the store (as while one process analyzes it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb

from analyzer.checks.stored import DELETE_FINDINGS, DELETE_LEDGERS, FindingCounts
from traces import interrupts
from traces.errors import TracesError
from traces.piped_child import start_piped_child
from traces.processes import cores
from traces.store.database import Store, open_for_writing, staging_directory
from traces.store.inserts import json_list
from traces.store.lake import transaction

WORKERS_ENV = "TRACES_ANALYZE_WORKERS"
"""Processes `traces analyze` checks runs in (1: this one); unset, one per core when the
runs hold PARALLEL_STEPS steps or more."""
PARALLEL_STEPS = 50_000
"""Steps below which one process analyzes: a worker's start (its interpreter, the checks'
imports, opening the store) costs 0.5-1 s, what one process spends on 6,000-12,000 steps;
below this the workers would save less than they cost."""
MAX_WORKERS = 4
"""Workers at most, whatever the cores: the last transaction is one process's either way."""
CHUNK_STEPS = 40_000
"""Steps a worker loads and checks at a time (a run never split): bounds its memory (about
5 KB of records per step) and keeps the two workers busy until the end."""


class AnalysisWorkerError(TracesError):
    """A worker process stopped or failed; the store is left as it was."""


def workers_for(steps: int) -> int:
    """How many processes analyze `steps` steps (1: this one)."""
    setting = os.environ.get(WORKERS_ENV, "").strip()
    if setting:
        try:
            return max(1, int(setting))
        except ValueError:
            raise TracesError(f"{WORKERS_ENV}={setting!r}: not a number of processes") from None
    if steps < PARALLEL_STEPS or os.name != "posix":  # workers inherit pipes: POSIX only
        return 1
    return max(1, min(cores(), MAX_WORKERS))


@dataclass(frozen=True)
class Plan:
    """How one analysis is split: chunks of run ids in order, their steps, the processes."""

    chunks: list[list[str]]
    steps: int
    workers: int


def plan(
    conn: duckdb.DuckDBPyConnection,
    ids: Sequence[str],
    *,
    max_steps: int = CHUNK_STEPS,
    workers: int | None = None,
    every: bool = False,
) -> Plan:
    """`ids` cut, in order, into chunks of whole runs of at most `max_steps` steps (a larger
    run is a chunk of its own); ids that do not exist are left out. `workers` defaults to
    what `workers_for` says for the steps. With several, chunks shrink toward the end (to a
    share of what is left per worker, down to an eighth of `max_steps`): the workers finish
    together rather than one waiting on the other's last large chunk. `every`: `ids` are
    every run of the store, counted without testing each (a third of the time)."""
    sizes = dict(
        conn.execute(
            "SELECT r.id, count(s.idx) FROM runs r LEFT JOIN step_rows s ON s.run_id = r.id "
            + ("" if every else "WHERE r.id IN (SELECT unnest(from_json(?, '[\"VARCHAR\"]'))) ")
            + "GROUP BY r.id",
            [] if every else [json_list(list(ids))],  # one value: see `traces.store.inserts`
        ).fetchall()
    )
    if every:  # a run recorded since `ids` were read is not theirs
        sizes = {run_id: sizes[run_id] for run_id in ids if run_id in sizes}
    total = sum(sizes.values())
    processes = workers_for(total) if workers is None else workers

    def target(left: int) -> int:
        if processes == 1:
            return max_steps
        return max(min(max_steps, left // (2 * processes)), max_steps // 8, 1)

    chunks: list[list[str]] = []
    current: list[str] = []
    steps, left = 0, total
    limit = target(left)
    for run_id in ids:
        size = sizes.get(run_id)
        if size is None:
            continue
        if current and steps + size > limit:
            chunks.append(current)
            left -= steps
            current, steps, limit = [], 0, target(left)
        current.append(run_id)
        steps += size
    if current:
        chunks.append(current)
    return Plan(chunks, total, processes)


@dataclass(frozen=True)
class Setup:
    """What a worker is told first: the store to read, its own file to write, the time."""

    store: Store
    out: Path
    now: datetime


class _Worker:
    """One worker process, the two pipes to it, and its output file."""

    def __init__(self, setup: Setup) -> None:
        self.out = setup.out
        # This process alone decides when it stops.
        self.child = start_piped_child("analyzer.checks.worker")
        self.process = self.child.process
        self.jobs, self.results = self.child.jobs, self.child.results
        self.busy = False
        self.send(setup)

    def send(self, message: Any) -> None:
        """Hand the worker its setup or a chunk of run ids."""
        try:
            self.jobs.send(message)
        except OSError:
            raise self.stopped() from None
        self.busy = message is not None and not isinstance(message, Setup)

    def stopped(self) -> AnalysisWorkerError:
        """The error of a worker that is gone (it says why on stderr, if it could)."""
        return AnalysisWorkerError(
            f"an analysis worker stopped (exit code {self.process.wait()}); nothing was stored"
        )

    def finish(self) -> None:
        """Tell the worker there is no more work and wait until it has closed its file."""
        self.jobs.close()
        try:
            message = self.results.recv()
        except (EOFError, OSError):
            raise self.stopped() from None
        _raise_failure(message)
        self.process.wait()

    def kill(self) -> None:
        """End the process at once (after an error or Ctrl-C)."""
        self.child.stop()


def _raise_failure(message: tuple[Any, ...]) -> None:
    kind = message[0]
    if kind == "error":
        raise AnalysisWorkerError(message[1])
    if kind == "failed":
        raise RuntimeError(f"an analysis worker failed:\n{message[1]}")


class Workers:
    """The worker processes of one analysis and their directory; leaving it stops them all
    and removes their files. Started before the analysis is planned, they load their imports
    (half a second) while this process reads which runs to give them."""

    def __init__(self, store: Store, workers: int) -> None:
        self.store = store
        now = datetime.now(UTC).replace(tzinfo=None)  # the findings' time
        # Where the store's server may attach the outputs to store them (`_replace`).
        self.directory = Path(
            tempfile.mkdtemp(prefix="traces-analyze-", dir=staging_directory(store))
        )
        self.workers: list[_Worker] = []
        try:
            with interrupts.starting_children():  # a Ctrl-C waits until all can be stopped
                for index in range(workers):
                    out = self.directory / f"worker-{index}.duckdb"
                    self.workers.append(
                        _Worker(
                            Setup(store.resolve() if isinstance(store, Path) else store, out, now)
                        )
                    )
        except BaseException:
            self.close()
            raise

    @property
    def size(self) -> int:
        """How many workers there are."""
        return len(self.workers)

    def __enter__(self) -> Workers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.workers.clear()
        shutil.rmtree(self.directory, ignore_errors=True)

    def run(
        self, chunks: list[list[str]], on_chunk: Callable[[int], None] | None
    ) -> dict[str, FindingCounts]:
        """Every chunk checked by whichever worker is free; each run's counts."""
        counts: dict[str, FindingCounts] = {}
        pending = list(reversed(chunks))
        by_pipe = {worker.results: worker for worker in self.workers}
        for worker in self.workers:
            if pending:
                worker.send(pending.pop())
        while any(worker.busy for worker in self.workers):
            busy = [worker.results for worker in self.workers if worker.busy]
            for ready in wait(busy):
                assert isinstance(ready, Connection)
                worker = by_pipe[ready]
                try:
                    message = ready.recv()
                except (EOFError, OSError):
                    raise worker.stopped() from None
                _raise_failure(message)
                _, found, done = message
                counts.update(found)
                worker.busy = False
                if pending:
                    worker.send(pending.pop())
                if on_chunk is not None:
                    on_chunk(done)
        for worker in self.workers:
            worker.finish()
        return counts

    def analyze(
        self, chunks: list[list[str]], on_chunk: Callable[[int], None] | None = None
    ) -> dict[str, FindingCounts]:
        """Check the runs of `chunks` (from `plan`; no connection of this process writing
        the store) and store their findings and summaries in one transaction; each run's
        findings counted. `on_chunk(n)` is told how many runs each finished chunk held."""
        counts = self.run(chunks, on_chunk)
        outs = [worker.out for worker in self.workers]
        with open_for_writing(self.store) as conn:
            _replace(conn, [run_id for chunk in chunks for run_id in chunk], outs)
        return counts


def _replace(conn: duckdb.DuckDBPyConnection, ids: list[str], outs: list[Path]) -> None:
    """In one transaction, the runs' findings, ledgers and summaries become the workers'."""
    # Named apart from another analysis's, attached by the same server at the same time.
    names = [f"worker_{os.getpid()}_{index}" for index in range(len(outs))]
    for name, out in zip(names, outs, strict=True):
        conn.execute(f"ATTACH '{_quoted(out)}' AS {name} (READ_ONLY)")

    def every(table: str) -> str:
        return " UNION ALL ".join(f"SELECT * FROM {name}.{table}" for name in names)

    def replace() -> None:
        conn.execute(DELETE_FINDINGS, [json_list(ids)])
        conn.execute(DELETE_LEDGERS, [json_list(ids)])
        conn.execute(f"INSERT INTO findings {every('findings')}")
        conn.execute(f"INSERT INTO ledgers {every('ledgers')}")
        conn.execute(
            "UPDATE runs SET failure_summary = u.summary, findings_by_kind = u.by_kind::JSON "
            f"FROM ({every('summaries')}) AS u WHERE runs.id = u.id"
        )

    try:
        # On a lake, done again when another writer's commit conflicted with it.
        transaction(conn, replace)
    finally:
        for name in names:
            with contextlib.suppress(duckdb.Error):
                conn.execute(f"DETACH {name}")


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def analyze_in_workers(
    db_path: Store,
    chunks: list[list[str]],
    workers: int,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, FindingCounts]:
    """Check the runs of `chunks` (from `plan`, with the store closed since) in
    `workers` processes and store their findings and summaries in one transaction; each
    run's findings counted. `on_chunk(n)` is told how many runs each finished chunk held."""
    with Workers(db_path, workers) as pool:
        return pool.analyze(chunks, on_chunk)

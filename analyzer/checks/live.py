"""Checking runs as they end, while the recording goes on: `traces runs` shows their findings.

A recording of more runs than it runs at once lasts several run lengths; its first runs'
findings need not wait for the last. Each run that ends while others are still queued is
handed to a checker process (`python -m analyzer.checks.live JOBS_FD RESULTS_FD DB
DATA_PATH`): it
analyzes it through the store's server, which the recording keeps open, and stores its
findings at once, in a transaction of its own. A process and not a thread: the checks are
Python holding the GIL, and the event loop that times every request must not wait for them.

The runs still in flight when the recording ends are checked by the recording command
itself, as before: starting a process for them would cost more than it saves. A checker
that fails only loses its head start: the command checks whatever it did not.

The runs still running are checked too, every `TRACES_LIVE_CHECK_S` seconds (5 by default;
0: never), by the same process: once the recording has lasted that long (`watch`, then
`tick` as steps are committed; the proxy, a server, starts it at once), it is told the
recording's process id, and checks that process's running runs that have new steps since
their last check, storing their findings so far as partial (`persist`: never over a run's
final findings; the check of the ended run replaces them). A round costs the steps of the
runs in flight, checked again from their first, in the checker and in the store's server
that reads and writes for it, on the cores the recording uses. So a run is checked again
only once it has a quarter more steps than at its last check (a run's checks then cost a
few times its steps, not its steps squared), and the next round waits for nineteen times
as long as this one took if that is longer (at most a twentieth of a core, both processes
counted in the round's wall time). Measured: README "Live and shared stores".
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import time
from multiprocessing.connection import Connection
from types import TracebackType
from typing import TYPE_CHECKING, Any

from analyzer.checks.stored import FindingCounts
from traces.store.database import Store

if TYPE_CHECKING:
    from traces.model import RunOutcome
    from traces.piped_child import PipedChild
    from traces.running import RunProgress

_CLOSE_WAIT_S = 120.0
"""How long the command waits for the checker to finish the runs it was handed."""

EVERY_ENV = "TRACES_LIVE_CHECK_S"
DEFAULT_EVERY_S = 5.0
"""Seconds between two checks of a recording's running runs (`EVERY_ENV` overrides it)."""
_IDLE_FACTOR = 19.0
"""A round of checks is followed by at least this many times its duration without one."""
_GROWTH = 1.25
"""A run is checked again once it has this many times the steps of its last check."""


def check_interval() -> float:
    """Seconds between two checks of a recording's running runs: `TRACES_LIVE_CHECK_S`, else
    the default; 0 (or a value that is not a number) turns them off."""
    text = os.environ.get(EVERY_ENV)
    if text is None:
        return DEFAULT_EVERY_S
    try:
        every = float(text)
    except ValueError:
        return 0.0
    return every if math.isfinite(every) and every > 0 else 0.0


class LiveChecks:
    """The checker process of one recording, started when the first run is handed over."""

    def __init__(self, db_path: Store) -> None:
        """Check runs of the store at `db_path`; nothing starts until `check` is called."""
        self.db_path = db_path
        self._child: PipedChild | None = None
        self._every = 0.0
        self._due = math.inf
        self._sent: list[str] = []
        self.counts: dict[str, FindingCounts] = {}
        """What the checker found, by run (once `finish` returned)."""

    def watch(self, *, now: bool = False) -> None:
        """Have this process's running runs checked every `check_interval()` seconds, from
        that long from now (at the first `tick` after it), or at once with `now`."""
        self._every = check_interval()
        if self._every > 0:
            self._due = time.monotonic() + (0.0 if now else self._every)
            if now:
                self.tick()

    def tick(self) -> None:
        """The recording goes on (a step was committed): start the watch once it is due.
        Costs a clock reading until then, nothing after."""
        if time.monotonic() < self._due:
            return
        self._due = math.inf
        try:
            if self._child is None:
                self._start()
            assert self._child is not None
            self._child.jobs.send(("watch", os.getpid(), self._every))
        except OSError:
            self._stop()  # it died: the runs are checked when they end

    def check(self, run_id: str) -> None:
        """Hand a run that has ended to the checker."""
        try:
            if self._child is None:
                self._start()
            assert self._child is not None
            self._child.jobs.send([run_id])
            self._sent.append(run_id)
        except OSError:
            self._stop()  # it died: the command checks the run itself

    def finish(self) -> list[str]:
        """Wait for the checker to have stored what it was handed; the runs it did not
        check (it failed), which the caller checks itself."""
        self._due = math.inf
        if self._child is None:
            return []
        self._child.jobs.close()
        with contextlib.suppress(EOFError, OSError):
            while self._child.results.poll(_CLOSE_WAIT_S):
                message: tuple[Any, ...] = self._child.results.recv()
                if message[0] != "done":
                    break
                self.counts.update(message[1])
        self._stop()
        return [run_id for run_id in self._sent if run_id not in self.counts]

    @property
    def child_pid(self) -> int | None:
        """The checker process's id, once started (the benchmarks weigh its CPU)."""
        return None if self._child is None else self._child.process.pid

    def __enter__(self) -> LiveChecks:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _start(self) -> None:
        from traces.piped_child import start_piped_child

        # The recording decides when it stops.
        self._child = start_piped_child(
            "analyzer.checks.live",
            str(self.db_path),
            getattr(self.db_path, "data_path", None) or "",
            quiet=True,
        )

    def _stop(self) -> None:
        if self._child is not None:
            self._child.stop()
        self._child = None


class Watching:
    """A recording's progress (`RunProgress`) that also ticks the live checks' watch at each
    committed step."""

    def __init__(self, inner: RunProgress, live: LiveChecks) -> None:
        self.inner = inner
        self.live = live

    def started(self, label: str, runs: int) -> None:
        self.inner.started(label, runs)

    def stepped(self, label: str) -> None:
        self.inner.stepped(label)
        self.live.tick()

    def done(self, label: str, run_id: str, outcome: RunOutcome) -> None:
        self.inner.done(label, run_id, outcome)


def serve(jobs_fd: int, results_fd: int, db_path: Store) -> None:
    """The checker's life: check each run handed over, storing its findings, and once told
    to watch, the recording's running runs every so often, until the job pipe closes."""
    from traces import interrupts

    interrupts.ignore_in_child()
    from analyzer.checks.persist import analyze_runs, finding_counts
    from traces.store.database import open_for_writing

    jobs = Connection(jobs_fd, writable=False)
    results = Connection(results_fd, readable=False)
    watch: _Watch | None = None
    try:
        with open_for_writing(db_path) as conn:
            while True:
                try:
                    wait = None if watch is None else max(0.0, watch.due - time.monotonic())
                    if not jobs.poll(wait):
                        assert watch is not None
                        watch.round(conn)
                        continue
                    message = jobs.recv()
                    if isinstance(message, tuple):  # ("watch", pid, every_s)
                        watch = _Watch(int(message[1]), float(message[2]))
                        continue
                    ids = message
                    while jobs.poll():  # every run that ended meanwhile: one transaction
                        more = jobs.recv()
                        if isinstance(more, list):
                            ids.extend(more)
                except (EOFError, OSError):
                    break
                found = analyze_runs(conn, ids)
                results.send(("done", [(run, finding_counts(f)) for run, f in found.items()]))
    except Exception as exc:  # the command checks what is left; say why on its stderr
        with contextlib.suppress(OSError):
            results.send(("error", f"{type(exc).__name__}: {exc}"))
    results.close()


_GROWN = """
    WITH r AS (SELECT id FROM runs WHERE status = 'running' AND recorder_pid = ?
               AND recorder_host = ?)
    SELECT run_id, max(idx) FROM step_rows WHERE {of_runs} GROUP BY run_id
"""
"""The last step of each running run of one recorder (`of_runs` keeps the scan to the row
groups of the recording's runs)."""


class _Watch:
    """The rounds of checks of one recorder's running runs."""

    def __init__(self, pid: int, every_s: float) -> None:
        from traces.store.run_tables import of_runs

        self.pid = pid
        self.every_s = every_s
        self.due = time.monotonic()
        self.checked: dict[str, int] = {}
        """The last step each run was checked through."""
        self._sql = _GROWN.format(of_runs=of_runs("SELECT id FROM r"))

    def _next_check(self, run_id: str) -> float:
        """The step count at which the run is checked again (its first step: at once)."""
        checked = self.checked.get(run_id)
        return 1.0 if checked is None else (checked + 1) * _GROWTH + 1

    def round(self, conn: Any) -> None:
        """Check the runs with steps not checked yet, storing their findings so far."""
        import duckdb

        from analyzer.checks.persist import analyze_runs

        started = time.monotonic()
        try:
            last = conn.execute(self._sql, [self.pid, socket.gethostname()]).fetchall()
            grown = {run: step for run, step in last if step + 1 >= self._next_check(run)}
            if grown:
                analyze_runs(conn, list(grown), only_running=True)
                self.checked.update(grown)
        except duckdb.TransactionException:
            pass  # ended runs kept conflicting: their own checks store them
        took = time.monotonic() - started
        self.due = time.monotonic() + max(self.every_s, _IDLE_FACTOR * took)


def main() -> None:
    """`python -m analyzer.checks.live JOBS_FD RESULTS_FD DB DATA_PATH`."""
    from traces.store.database import resolve_db_path

    store = resolve_db_path(sys.argv[3], sys.argv[4] or None)
    serve(int(sys.argv[1]), int(sys.argv[2]), store)


if __name__ == "__main__":
    main()

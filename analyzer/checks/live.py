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
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from analyzer.checks.persist import FindingCounts
from traces.store.database import Store

_CLOSE_WAIT_S = 120.0
"""How long the command waits for the checker to finish the runs it was handed."""


class LiveChecks:
    """The checker process of one recording, started when the first run is handed over."""

    def __init__(self, db_path: Store) -> None:
        """Check runs of the store at `db_path`; nothing starts until `check` is called."""
        self.db_path = db_path
        self._process: subprocess.Popen[bytes] | None = None
        self._jobs: Connection | None = None
        self._results: Connection | None = None
        self._sent: list[str] = []
        self.counts: dict[str, FindingCounts] = {}
        """What the checker found, by run (once `finish` returned)."""

    def check(self, run_id: str) -> None:
        """Hand a run that has ended to the checker."""
        try:
            if self._jobs is None:
                self._start()
            assert self._jobs is not None
            self._jobs.send([run_id])
            self._sent.append(run_id)
        except OSError:
            self._stop()  # it died: the command checks the run itself

    def finish(self) -> list[str]:
        """Wait for the checker to have stored what it was handed; the runs it did not
        check (it failed), which the caller checks itself."""
        if self._jobs is None or self._results is None:
            return []
        self._jobs.close()
        with contextlib.suppress(EOFError, OSError):
            while self._results.poll(_CLOSE_WAIT_S):
                message: tuple[Any, ...] = self._results.recv()
                if message[0] != "done":
                    break
                self.counts.update(message[1])
        self._stop()
        return [run_id for run_id in self._sent if run_id not in self.counts]

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
        from traces import interrupts
        from traces.processes import child_env

        jobs_read, jobs_write = os.pipe()
        results_read, results_write = os.pipe()
        try:
            # Born with Ctrl-C and SIGTERM blocked and ignoring them from its first line:
            # the recording decides when it stops.
            with interrupts.starting_children():
                self._process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "analyzer.checks.live",
                        str(jobs_read),
                        str(results_write),
                        str(self.db_path),
                        getattr(self.db_path, "data_path", None) or "",
                    ],
                    pass_fds=(jobs_read, results_write),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    env=child_env(),
                )
        except BaseException:
            for fd in (jobs_read, jobs_write, results_read, results_write):
                os.close(fd)
            raise
        os.close(jobs_read)
        os.close(results_write)
        self._jobs = Connection(jobs_write, readable=False)
        self._results = Connection(results_read, writable=False)

    def _stop(self) -> None:
        for pipe in (self._jobs, self._results):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
        self._process = self._jobs = self._results = None


def serve(jobs_fd: int, results_fd: int, db_path: Store) -> None:
    """The checker's life: check each run handed over, storing its findings, until the
    job pipe closes."""
    from traces import interrupts

    interrupts.ignore_in_child()
    from analyzer.checks.persist import analyze_runs, finding_counts
    from traces.store.database import open_for_writing

    jobs = Connection(jobs_fd, writable=False)
    results = Connection(results_fd, readable=False)
    try:
        with open_for_writing(db_path) as conn:
            while True:
                try:
                    ids = jobs.recv()
                    while jobs.poll():  # every run that ended meanwhile: one transaction
                        ids.extend(jobs.recv())
                except (EOFError, OSError):
                    break
                found = analyze_runs(conn, ids)
                results.send(("done", [(run, finding_counts(f)) for run, f in found.items()]))
    except Exception as exc:  # the command checks what is left; say why on its stderr
        with contextlib.suppress(OSError):
            results.send(("error", f"{type(exc).__name__}: {exc}"))
    results.close()


def main() -> None:
    """`python -m analyzer.checks.live JOBS_FD RESULTS_FD DB DATA_PATH`."""
    from traces.store.database import resolve_db_path

    store = resolve_db_path(sys.argv[3], sys.argv[4] or None)
    serve(int(sys.argv[1]), int(sys.argv[2]), store)


if __name__ == "__main__":
    main()

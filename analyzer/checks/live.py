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
import sys
from multiprocessing.connection import Connection
from types import TracebackType
from typing import TYPE_CHECKING, Any

from analyzer.checks.persist import FindingCounts
from traces.store.database import Store

if TYPE_CHECKING:
    from traces.piped_child import PipedChild

_CLOSE_WAIT_S = 120.0
"""How long the command waits for the checker to finish the runs it was handed."""


class LiveChecks:
    """The checker process of one recording, started when the first run is handed over."""

    def __init__(self, db_path: Store) -> None:
        """Check runs of the store at `db_path`; nothing starts until `check` is called."""
        self.db_path = db_path
        self._child: PipedChild | None = None
        self._sent: list[str] = []
        self.counts: dict[str, FindingCounts] = {}
        """What the checker found, by run (once `finish` returned)."""

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

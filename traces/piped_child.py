"""A worker process fed through pipes: jobs it reads, results it writes.

Import workers, analysis workers and a recording's live checker are each a fresh
interpreter (`traces.processes`) started as `python -m MODULE JOBS_FD RESULTS_FD ARGS…`,
talking over two one-way `multiprocessing` connections, born with Ctrl-C and SIGTERM blocked
so that only the command that started it decides when it stops.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection

from traces import interrupts
from traces.processes import child_env


@dataclass
class PipedChild:
    """A worker process and the two pipes to it."""

    process: subprocess.Popen[bytes]
    jobs: Connection
    """What this process sends it (closing it tells the worker there is no more work)."""
    results: Connection
    """What it sends back."""

    def stop(self, wait_s: float = 0.0) -> None:
        """Close its job pipe, give it `wait_s` seconds to end on its own, then kill it."""
        with contextlib.suppress(OSError):
            self.jobs.close()
        if wait_s > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=wait_s)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        with contextlib.suppress(OSError):
            self.results.close()


def start_piped_child(module: str, *args: str, quiet: bool = False) -> PipedChild:
    """Start `python -m MODULE JOBS_FD RESULTS_FD ARGS…` (its stdout discarded when
    `quiet`); the worker ignores Ctrl-C and SIGTERM from its first line (see
    `interrupts.ignore_in_child`), so none reaches it while it imports or works."""
    jobs_read, jobs_write = os.pipe()
    results_read, results_write = os.pipe()
    try:
        with interrupts.starting_children():
            process = subprocess.Popen(
                [sys.executable, "-m", module, str(jobs_read), str(results_write), *args],
                pass_fds=(jobs_read, results_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL if quiet else None,
                env=child_env(),
            )
    except BaseException:
        for fd in (jobs_read, jobs_write, results_read, results_write):
            os.close(fd)
        raise
    os.close(jobs_read)
    os.close(results_write)
    return PipedChild(
        process,
        Connection(jobs_write, readable=False),
        Connection(results_read, writable=False),
    )

"""`python -m analyzer.compare.worker JOBS_FD RESULTS_FD`: a worker of a comparison's
resampling.

Started by `resampling.bootstrap_groups` with the two pipe ends it inherits. It reads lists of
groups to bootstrap (`resampling.GroupJob`) until the job pipe closes and answers each list
with ("done", {group: its statistics}), or ("failed", traceback) on a bug.
"""

from __future__ import annotations

import sys
import traceback
from multiprocessing.connection import Connection

from analyzer.compare.resampling import bootstrap_job
from traces import interrupts
from traces.processes import send_or_exit


def serve(jobs_fd: int, results_fd: int) -> None:
    """A worker's life: jobs until the job pipe closes."""
    interrupts.ignore_in_child()  # the comparing process decides when a worker stops
    jobs = Connection(jobs_fd, writable=False)
    results = Connection(results_fd, readable=False)
    while True:
        try:
            share = jobs.recv()
        except (EOFError, OSError):
            break
        try:
            send_or_exit(results, ("done", {job.group: bootstrap_job(job) for job in share}))
        except Exception:
            send_or_exit(results, ("failed", traceback.format_exc()))
            break
    results.close()


def main() -> None:
    """Serve jobs until the comparing process closes the job pipe."""
    serve(int(sys.argv[1]), int(sys.argv[2]))


if __name__ == "__main__":
    main()

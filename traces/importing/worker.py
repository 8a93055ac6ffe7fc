"""`python -m traces.importing.worker JOBS_FD RESULTS_FD`: a worker of a parallel import.

Started by `parallel.WorkerPool` with the two pipe ends it inherits; see `parallel.serve`.
"""

from __future__ import annotations

import sys

from traces.importing.parallel import serve


def main() -> None:
    """Serve jobs until the importing process closes the job pipe."""
    serve(int(sys.argv[1]), int(sys.argv[2]))


if __name__ == "__main__":
    main()

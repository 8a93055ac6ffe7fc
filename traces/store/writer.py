"""`python -m traces.store.writer DB_PATH READY_FD STARTER_PID`: the store's server.

Started by `rendezvous.connect_or_start` when a client needs the store and no server runs;
see `traces.store.server`. A fresh interpreter that imports only the store: started with
multiprocessing's spawn, it re-ran the `traces` console script and imported every command
(about 1.3 s of CPU on each `traces record`, against about 0.1 s now).

It forks once, first thing, and the child serves: the server outlives the command that
started it while other clients use it, so it must be nobody's child (the starting command
would otherwise have to reap it, or leave a zombie). The fork happens before any import or
thread, where a fork is safe (`traces.processes`).
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    """Serve the database named in argv; say on READY_FD once listening (or why not)."""
    # Before the imports (DuckDB's take a tenth of a second): a server stops when its last
    # client leaves, never because a terminal's Ctrl-C reached the command that started it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.fork() != 0:
        os._exit(0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    from traces.store.database import resolve_db_path
    from traces.store.server import serve

    # A lake's name is read as the command line's was (its data path and password came in
    # this process's environment: see `rendezvous._start`).
    serve(resolve_db_path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))


if __name__ == "__main__":
    main()

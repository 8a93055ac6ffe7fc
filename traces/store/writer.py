"""`python -m traces.store.writer DB_PATH OPS_FD ACKS_FD`: the recorder's writer process.

Started by `recorder.Recorder` with the two pipe ends it inherits; see
`writer_process.writer_main`. A fresh interpreter that imports only the store: started with
multiprocessing's spawn, it re-ran the `traces` console script and imported every command
(about 1.3 s of CPU on each `traces record`, against about 0.1 s now).
"""

from __future__ import annotations

import signal
import sys


def main() -> None:
    """Open the database named in argv, then commit what arrives on OPS_FD until it closes."""
    # Before the imports (DuckDB's take a tenth of a second): only the parent decides when
    # recording ends (see writer_main).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from multiprocessing.connection import Connection

    from traces.store.database import resolve_db_path
    from traces.store.writer_process import writer_main

    path, ops_fd, acks_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # A lake's name is read as the command line's was (its data path and password came in
    # this process's environment: see `recorder._start_writer`).
    store = resolve_db_path(path)
    writer_main(store, Connection(ops_fd, writable=False), Connection(acks_fd, readable=False))


if __name__ == "__main__":
    main()

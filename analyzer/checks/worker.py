"""`python -m analyzer.checks.worker JOBS_FD RESULTS_FD`: a worker of a parallel analysis.

Started by `parallel.Workers` with the two pipe ends it inherits. It is told the store, its own
output file and the time (`parallel.Setup`), then gets chunks of run ids: it loads and checks
each chunk as `traces analyze` does in one process, appends the findings, the ledgers and each
run's summary to its output file, and answers with each run's findings counted. When the job pipe
closes it closes its file (so that it can be attached) and says so.
"""

from __future__ import annotations

import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any

import duckdb

from analyzer.checks.loader import Messages, load_runs
from analyzer.checks.parallel import Setup
from analyzer.checks.persist import (
    check_runs,
    finding_columns,
    finding_counts,
    summary_columns,
    without_collector,
)
from traces import interrupts
from traces.errors import TracesError
from traces.processes import send_or_exit
from traces.store import lake
from traces.store.inserts import insert_columns, insert_rows, json_list
from traces.store.lake import LakeStore

_SUMMARIES = (
    "INSERT INTO out.summaries SELECT unnest(from_json($1, '[\"VARCHAR\"]')), "
    "unnest(from_json($2, '[\"VARCHAR\"]')), unnest(from_json($3, '[\"VARCHAR\"]'))"
)


def _open(setup: Setup) -> duckdb.DuckDBPyConnection:
    """A connection reading the store (read-only, the default schema) and writing `out`."""
    conn = duckdb.connect()
    conn.execute("SET threads = 1")  # one process per core already: more only contend
    conn.execute(f"ATTACH '{_quoted(setup.out)}' AS out")
    if isinstance(setup.store, LakeStore):
        lake.attach(conn, setup.store, "store", read_only=True)
    else:
        conn.execute(f"ATTACH '{_quoted(setup.store)}' AS store (READ_ONLY)")
    conn.execute("USE store")
    # The store's own columns, whatever its version: the final INSERT copies rows as they are.
    conn.execute("CREATE TABLE out.findings AS SELECT * FROM findings LIMIT 0")
    conn.execute("CREATE TABLE out.ledgers AS SELECT * FROM ledgers LIMIT 0")
    conn.execute("CREATE TABLE out.summaries (id VARCHAR, summary VARCHAR, by_kind VARCHAR)")
    return conn


def _quoted(path: object) -> str:
    return str(path).replace("'", "''")


def _check(
    conn: duckdb.DuckDBPyConnection, setup: Setup, messages: Messages, ids: list[str]
) -> tuple[Any, ...]:
    found, ledgers = check_runs(load_runs(conn, ids, messages), setup.now)
    counts = {run_id: finding_counts(findings) for run_id, findings in found.items()}
    if found:
        columns = finding_columns(found, setup.now)
        if columns[0]:
            insert_columns(conn, "findings", columns, into="out.findings")
        insert_rows(conn, "ledgers", ledgers, into="out.ledgers")
        conn.execute(_SUMMARIES, [json_list(c) for c in summary_columns(counts)])
    return ("done", list(counts.items()), len(ids))


def serve(jobs_fd: int, results_fd: int) -> None:
    """A worker's life: the setup, then chunks until the job pipe closes."""
    interrupts.ignore_in_child()  # the analyzing process decides when a worker stops
    jobs = Connection(jobs_fd, writable=False)
    results = Connection(results_fd, readable=False)
    conn: duckdb.DuckDBPyConnection | None = None
    with without_collector():
        try:
            setup = jobs.recv()
            conn = _open(setup)
            messages = Messages()
            while True:
                try:
                    ids = jobs.recv()
                except (EOFError, OSError):
                    break
                send_or_exit(results, _check(conn, setup, messages, ids))
            conn.close()
            conn = None
            send_or_exit(results, ("closed",))
        except TracesError as err:
            send_or_exit(results, ("error", str(err)))
        except duckdb.Error as err:
            send_or_exit(results, ("error", f"cannot analyze: {str(err).splitlines()[0]}"))
        except Exception:
            send_or_exit(results, ("failed", traceback.format_exc()))
        finally:
            if conn is not None:
                conn.close()
    results.close()


def main() -> None:
    """Serve jobs until the analyzing process closes the job pipe."""
    serve(int(sys.argv[1]), int(sys.argv[2]))


if __name__ == "__main__":
    main()

"""A batch of runs as queries over the per-run tables take it: their ids as one JSON text
(`BATCH_IDS`) and the range of their keys written into the query's text as constants
(`of_batch`, `RunBatch`), so that each scan skips the row groups of other runs. The
analyzer's loader reads its batches so; the viewer's text search its parts of the store."""

from __future__ import annotations

import re
from typing import Any

import duckdb

from traces.store.inserts import json_list
from traces.store.run_tables import RUN_COLUMN

BATCH_IDS = "SELECT unnest(from_json($1, '[\"VARCHAR\"]'))"
"""The batch's ids: `$1`, the batch as one JSON text (a list of Python values costs DuckDB's
client a few µs each, see `traces.store.inserts`)."""


def of_batch(table: str = "") -> str:
    """The rows of the batch's runs in a per-run table (`table`: its alias, if any): DuckDB
    turns the ids into a hash semi-join whatever their number, and the range of the runs'
    keys (migration 12) lets the scan skip every row group whose keys all fall outside it.
    Runs stored together (one import, one recording session) have neighbouring keys, so a
    batch of them reads a few row groups instead of the whole table, and a million-step
    store costs per batch what a small one does.

    The range goes in as constants (`RunBatch.execute` writes them for `{low}` and `{high}`),
    not as `traces.store.run_tables.of_runs`' subqueries: beside those, DuckDB's join order
    rested on the table's statistics, and on a store whose statistics a rewrite had renewed
    (the server's compaction after a migration) it hashed every row of the range, all
    columns, before joining the ids: 800,000 rows of `steps` for a batch's 40,000, five
    times the CPU and a gigabyte of page faults a batch (measured, README Analyzing)."""
    prefix = f"{table}." if table else ""
    return (
        f"{prefix}run_key BETWEEN {{low}} AND {{high}} "
        f"AND {prefix}{RUN_COLUMN} BETWEEN {{first}} AND {{last}} "
        f"AND {prefix}{RUN_COLUMN} IN ({BATCH_IDS})"
    )


_KEY_RANGE_SQL = f"SELECT min(key), max(key) FROM runs WHERE id IN ({BATCH_IDS})"


class RunBatch:
    """A batch of runs as its queries take it: `$1`, its ids as one JSON text, and the range
    of their keys, written into the query's text (`of_batch`)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, ids: list[str]) -> None:
        self.params: list[Any] = [json_list(ids)]
        row = conn.execute(_KEY_RANGE_SQL, self.params).fetchone()
        low, high = row if row is not None else (None, None)
        # Integers from the store (NULL when no run of the batch has a key: no rows, as the
        # subqueries gave), so the text is a number.
        self.low = "NULL" if low is None else str(int(low))
        self.high = "NULL" if high is None else str(int(high))
        # The ids' own range too, as string literals: DuckDB 1.5 derived it from the ids'
        # join and filtered each scan by it; 2.0 probes the join's hash table instead and
        # reads every row of the table (904,030 rows of `tool_result_rows` for a batch's
        # 38,000, twice the time of the whole query: measured, README Analyzing).
        self.first = _literal(min(ids)) if ids else "NULL"
        self.last = _literal(max(ids)) if ids else "NULL"

    def execute(
        self, conn: duckdb.DuckDBPyConnection, sql: str, *more: Any
    ) -> duckdb.DuckDBPyConnection:
        """`sql` run with the batch's ranges written in and `$1` its ids, then `more`."""
        constants = {"low": self.low, "high": self.high, "first": self.first, "last": self.last}
        # One pass: an id's text is never read for a placeholder.
        text = _PLACEHOLDER.sub(lambda match: constants[match[1]], sql)
        return conn.execute(text, [*self.params, *more])


_PLACEHOLDER = re.compile(r"\{(low|high|first|last)\}")


def _literal(text: str) -> str:
    """`text` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"

"""Writing an import: one DuckDB transaction for the whole command, filled in bulk.

Rows are the live recorder's rows (same builders, same column orders), buffered and inserted
a batch at a time with one `INSERT … SELECT unnest($1), unnest($2), …` per table: each
parameter is a whole column, so a batch of thousands of rows costs a handful of statements.
Nothing is committed until every file of the command has been read, so a refused line, a
locked file or Ctrl-C leaves the database as it was. The transaction is opened lazily, at
the first flush: a small import refused early never writes at all.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Protocol

import duckdb

from traces.model import RunOutcome, RunRecord
from traces.store.rows import outcome_row, run_row
from traces.store.writer_process import TABLES, UPDATE_RUN_COLUMNS

RUN_COLUMNS: tuple[str, ...] = TABLES["runs"] + tuple(
    c for c in UPDATE_RUN_COLUMNS if c != "status"
)
"""An imported run is inserted finished: its opening columns and its outcome at once."""

IMPORT_COLUMNS: tuple[str, ...] = (
    "id",
    "path",
    "sha256",
    "format",
    "provider",
    "lines",
    "exchanges",
    "runs",
    "skipped",
    "skipped_lines",
    "imported_at",
)

COLUMNS: dict[str, tuple[str, ...]] = {
    "runs": RUN_COLUMNS,
    "messages": TABLES["messages"],
    "steps": TABLES["steps"],
    "step_messages": TABLES["step_messages"],
    "tool_calls": TABLES["tool_calls"],
    "tool_results": TABLES["tool_results"],
    "imports": IMPORT_COLUMNS,
}
"""Tables an import writes, in insertion order, with the column order of their rows."""

FLUSH_ROWS = 20_000
"""Rows buffered before a batch goes to DuckDB: large enough that the per-statement cost
vanishes, small enough that a 100k-exchange file never sits whole in Python memory."""

_STATUS = TABLES["runs"].index("status")
_OUTCOME_KEEP = [i for i, c in enumerate(UPDATE_RUN_COLUMNS) if c != "status"]


class RowSink(Protocol):
    """Where built rows go (the writer; a worker's batch; a test's list)."""

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        """Take one row of `table` (a key of `COLUMNS`), in that table's column order."""


class ImportSink(RowSink, Protocol):
    """Where an import's rows go: one at a time, or a worker's batch already in columns."""

    def add_columns(self, table: str, columns: list[list[Any]]) -> None:
        """Take rows of `table` as one list per column, in that table's column order."""


def _insert_sql(table: str, constant: tuple[bool, ...]) -> str:
    """The batch insert of `table`; a column marked constant is one value, not a list."""
    columns = COLUMNS[table]
    values = ", ".join(
        f"${i}" if same else f"unnest(${i})" for i, same in enumerate(constant, start=1)
    )
    conflict = " ON CONFLICT DO NOTHING" if table == "messages" else ""
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {values}{conflict}"


_INSERTS: dict[tuple[str, tuple[bool, ...]], str] = {}


def _constant(column: list[Any]) -> bool:
    """Whether every value of `column` is stored as the first one is. Python's `==` says
    1 == 1.0 == True and 0.0 == -0.0: numbers must be of the same type, and not floats."""
    first = column[0]
    if column.count(first) != len(column):
        return False
    kind = type(first)
    if first is None or kind is str:
        return True
    return kind is not float and all(type(v) is kind for v in column)


def insert_batch(conn: duckdb.DuckDBPyConnection, table: str, columns: list[list[Any]]) -> None:
    """Insert rows of `table` given as one list per column, with one statement.

    Converting Python values for DuckDB is most of an insert's cost, and in a batch many
    columns hold one value throughout (no error, no time to first token, one import id):
    such a column goes as that value, once. The first column stays a list: it carries the
    number of rows.
    """
    constant = (False, *map(_constant, columns[1:]))
    sql = _INSERTS.get((table, constant))
    if sql is None:
        sql = _INSERTS[table, constant] = _insert_sql(table, constant)
    conn.execute(
        sql, [column[0] if same else column for column, same in zip(columns, constant, strict=True)]
    )


def finished_run_row(run: RunRecord, outcome: RunOutcome) -> tuple[Any, ...]:
    """The `runs` row of a finished run, in `RUN_COLUMNS` order (the recorder's builders)."""
    head = list(run_row(run))
    head[_STATUS] = outcome.status.value
    tail = outcome_row(run.id, outcome)
    return (*head, *(tail[i] for i in _OUTCOME_KEEP))


class ImportWriter:
    """Buffers rows and inserts them in batches inside one transaction."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Write through `conn`; nothing happens until the first flush."""
        self.conn = conn
        self.rows: defaultdict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self.columns: dict[str, list[list[Any]]] = {}
        self.buffered = 0
        self.begun = False

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        """Queue one row of `table` (a key of `COLUMNS`), flushing when the buffer is full."""
        self.rows[table].append(row)
        self.buffered += 1
        if self.buffered >= FLUSH_ROWS:
            self.flush()

    def add_columns(self, table: str, columns: list[list[Any]]) -> None:
        """Queue rows of `table` given as one list per column (a worker's batch)."""
        if not columns or not columns[0]:
            return
        buffered = self.columns.get(table)
        if buffered is None:
            self.columns[table] = [list(column) for column in columns]
        else:
            for into, column in zip(buffered, columns, strict=True):
                into.extend(column)
        self.buffered += len(columns[0])
        if self.buffered >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Insert everything buffered (opening the transaction if needed)."""
        if not self.buffered:
            return
        self._begin()
        for table in COLUMNS:
            rows = self.rows.pop(table, None)
            if rows:
                insert_batch(self.conn, table, [list(c) for c in zip(*rows, strict=True)])
            columns = self.columns.pop(table, None)
            if columns:
                insert_batch(self.conn, table, columns)
        self.buffered = 0

    def _begin(self) -> None:
        if not self.begun:
            self.conn.execute("BEGIN TRANSACTION")
            self.begun = True

    def commit(self) -> None:
        """Insert what is left and commit the whole import."""
        self.flush()
        if self.begun:
            self.conn.execute("COMMIT")
            self.begun = False

    def rollback(self) -> None:
        """Forget everything: buffered rows and whatever was inserted."""
        self.rows.clear()
        self.columns.clear()
        self.buffered = 0
        if self.begun:
            self.begun = False
            self.conn.execute("ROLLBACK")

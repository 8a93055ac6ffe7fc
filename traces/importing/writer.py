"""Writing an import: one DuckDB transaction for the whole command, filled in bulk.

Rows are the live recorder's rows (same builders, `traces.store.rows`), buffered and inserted
a batch at a time by the recorder's insert (`traces.store.inserts`): one statement per table,
each parameter a whole column, so a batch of thousands of rows costs a handful of statements.
Nothing is committed until every file of the command has been read, so a refused line, a
locked file or Ctrl-C leaves the database as it was. The transaction is opened lazily, at
the first flush: a small import refused early never writes at all.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Protocol

from traces.store.inserts import insert_columns, insert_rows
from traces.store.tables import ROW_TYPES

if TYPE_CHECKING:
    import duckdb

FLUSH_ROWS = 20_000
"""Rows buffered before a batch goes to DuckDB: large enough that the per-statement cost
vanishes, small enough that a 100k-exchange file never sits whole in Python memory."""


class RowSink(Protocol):
    """Where built rows go (the writer; a worker's batch; a test's list)."""

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        """Take one row of `table` (a key of `tables.ROW_TYPES`), of that table's row type."""


class ImportSink(RowSink, Protocol):
    """Where an import's rows go: one at a time, or a worker's batch already in columns."""

    def add_columns(self, table: str, columns: list[list[Any]]) -> None:
        """Take rows of `table` as one list per column, in that table's column order."""


class ImportWriter:
    """Buffers rows and inserts them in batches inside one transaction."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Write through `conn`; nothing happens until the first flush."""
        self.conn = conn
        self.rows: defaultdict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self.columns: dict[str, list[list[Any]]] = {}
        self.buffered = 0
        self.begun = False
        self.turn = ExitStack()

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        """Queue one row of `table` (a key of `tables.ROW_TYPES`), flushing when the buffer
        is full."""
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
        keys: dict[str, int] = {}  # each run's key looked up once per flush
        for table in ROW_TYPES:  # a run before its steps
            rows = self.rows.pop(table, None)
            if rows:
                insert_rows(self.conn, table, rows, keys=keys)
            columns = self.columns.pop(table, None)
            if columns:
                insert_columns(self.conn, table, columns, keys=keys)
        self.buffered = 0

    def _begin(self) -> None:
        if not self.begun:
            # A lake on a SQLite catalog: its writers take turns (see `writing_turn`; imported
            # here, as the lake module imports DuckDB, which import workers start without).
            from traces.store.lake import writing_turn

            self.turn.enter_context(writing_turn(self.conn))
            self.conn.execute("BEGIN TRANSACTION")
            self.begun = True

    def commit(self) -> None:
        """Insert what is left and commit the whole import."""
        self.flush()
        if self.begun:
            self.conn.execute("COMMIT")
            self.begun = False
            self.turn.close()

    def rollback(self) -> None:
        """Forget everything: buffered rows and whatever was inserted."""
        self.rows.clear()
        self.columns.clear()
        self.buffered = 0
        if self.begun:
            self.begun = False
            try:
                self.conn.execute("ROLLBACK")
            finally:
                self.turn.close()

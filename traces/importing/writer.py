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

from traces.store.inserts import insert_columns, insert_rows, json_list, run_keys
from traces.store.tables import COLUMNS, PER_RUN, ROW_TYPES, RUN_KEY, stored_columns

if TYPE_CHECKING:
    import duckdb

_RESULTS = "tool_results"
_RUN_ID = COLUMNS[_RESULTS].index("run_id")

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
        self.held: list[list[Any]] = []
        """Tool results (as columns) whose run is not stored yet: see `flush`."""

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
        runs: list[str] = []
        for table in ROW_TYPES:  # a run before its steps
            rows = self.rows.pop(table, None)
            columns = self.columns.pop(table, None)
            if table == "runs":
                runs = [r[0] for r in rows or ()] + (columns[0] if columns else [])
            if table == _RESULTS:
                self._hold(rows, columns)
                continue
            if rows:
                insert_rows(self.conn, table, rows, keys=keys)
            if columns:
                insert_columns(self.conn, table, columns, keys=keys)
        # An imported run's row is written when its log ends: the rows of its steps stored
        # by earlier batches have no run key yet (reads of one run filter on it). Given now.
        if runs:
            for table in sorted(PER_RUN):
                base = stored_columns(table)[0]
                self.conn.execute(
                    f"UPDATE {base} SET {RUN_KEY} = r.key FROM runs r "
                    f"WHERE {base}.{RUN_KEY} IS NULL AND r.id = {base}.run_id "
                    "AND r.id IN (SELECT unnest(from_json(?, '[\"VARCHAR\"]')))",
                    [json_list(runs)],
                )
        self._insert_held(keys)
        self.buffered = 0

    def _hold(self, rows: list[tuple[Any, ...]] | None, columns: list[list[Any]] | None) -> None:
        """Queue tool results until their run is stored: the insert finds the tool message
        holding an output (stored once, migration 16) within the run's rows by its key."""
        for more in ([list(c) for c in zip(*rows, strict=True)] if rows else None, columns):
            if not more:
                continue
            if not self.held:
                self.held = [list(c) for c in more]
            else:
                for into, column in zip(self.held, more, strict=True):
                    into.extend(column)

    def _insert_held(self, keys: dict[str, int], *, every: bool = False) -> None:
        """Insert the held tool results whose run is stored (`every`: all of them)."""
        if not self.held or not self.held[0]:
            return
        found = run_keys(self.conn, self.held[_RUN_ID], keys)
        ready = [i for i, key in enumerate(found) if every or key is not None]
        if len(ready) == len(found):
            ready_columns, self.held = self.held, []
        else:
            waiting = [i for i, key in enumerate(found) if key is None]
            ready_columns = [[column[i] for i in ready] for column in self.held]
            self.held = [[column[i] for i in waiting] for column in self.held]
        if ready_columns and ready_columns[0]:
            insert_columns(self.conn, _RESULTS, ready_columns, keys=keys)

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
        self._insert_held({}, every=True)
        if self.begun:
            self.conn.execute("COMMIT")
            self.begun = False
            self.turn.close()

    def rollback(self) -> None:
        """Forget everything: buffered rows and whatever was inserted."""
        self.rows.clear()
        self.columns.clear()
        self.held = []
        self.buffered = 0
        if self.begun:
            self.begun = False
            try:
                self.conn.execute("ROLLBACK")
            finally:
                self.turn.close()

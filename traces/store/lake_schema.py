"""The trace schema on a DuckLake: the file store's schema, in what DuckLake can hold.

DuckLake has tables, views, macros, comments, ALTER and UPDATE, but no PRIMARY KEY or UNIQUE
constraint, no index and no sequence, no comment on a view's column, and (DuckLake 1.0,
duckdb/ducklake#1383) a NOT NULL dropped by ALTER still fails the rows that move from the
catalog to Parquet later. So:

- A new lake is created at the latest schema in one transaction, from the schema the file
  migrations build (an in-memory DuckDB migrated as a file is): the same tables and columns
  (types, NOT NULL where the file has it now, defaults), views and macros, without keys;
  every migration is recorded as applied. A later migration applies to an existing lake
  as written (`adapt` takes the keys out, and refuses what a lake cannot do).
- Keys that writers never repeat (a run's id, a step's run and index, an import's id, a
  migration's number) need nothing else.
- `messages.hash`: a message is stored once however many steps send it, as on a file since
  migration 14 dropped the index of its `key`: an import skips the hashes already stored (an
  anti-join, `inserts.Dedup`), and the recorders' writer the messages it stored itself
  (`traces.store.numbers`; looking the others up would scan the column at every commit).
  So a message two writers sent (a task's system prompt) may be stored once by each, as may
  one that two importing writers stored at the same moment. The rows are identical (same
  hash, role and body), and every reader treats `messages` as a set: `request_messages`
  keeps one row per position and the view `step_messages` joins the distinct keys (both as
  the file defines them, migrations 10 and 13), the analyzer looks bodies up by key.
- `messages.seq` (migration 13), the stored order that reads of a run join on: each writer
  draws the next number after the greatest it sees, with no sequence, so two writers may
  give two messages one number; every read joins on `seq` and `key` together, so a shared
  number costs a row group more to read, never a wrong message (as `runs.key`). The same
  SQL as a file's.
- DuckLake keeps no comment on a view's columns: `traces schema` reads them from
  `schema_docs` instead.

Writers that open a new (or older) lake at the same time conflict on it: each migration's
transaction also comments `schema_migrations`, and DuckLake refuses two concurrent changes of
one table; the writer that lost finds the work done when it tries again.
"""

from __future__ import annotations

import functools
import re

import duckdb

from traces.errors import DatabaseError
from traces.store.lake import ALIAS, LakeStore, connect, error_line, transaction
from traces.store.migrations import MIGRATIONS, migrate
from traces.store.schema_docs import TABLES, comment_sql

_COLUMN_KEY = re.compile(r"\s+(PRIMARY\s+KEY|UNIQUE)\b(?!\s*\()", re.IGNORECASE)
_TABLE_KEY = re.compile(r",\s*(?:PRIMARY\s+KEY|UNIQUE)\s*\([^)]*\)", re.IGNORECASE)
_COMPRESSION = re.compile(r"\s+USING\s+COMPRESSION\s+\w+", re.IGNORECASE)
"""A column's compression: a lake compresses every Parquet column with zstd (`OPTIONS`)."""
_UNSUPPORTED = re.compile(
    r"\b(PRIMARY\s+KEY|UNIQUE|CREATE\s+(?:UNIQUE\s+)?INDEX|CREATE\s+SEQUENCE|nextval"
    r"|ON\s+CONFLICT|DROP\s+NOT\s+NULL)\b",
    re.IGNORECASE,
)
_MACRO_WRAPPERS: dict[str, str] = {}
"""Table macros a lake defines around the file's definition (none since migration 10, whose
`request_messages` keeps one row per position on either store)."""
_COMMENT = "'" + TABLES["schema_migrations"][0].replace("'", "''") + "'"

FIRST_VERSION = 9
"""The schema version the first lake stores were created at (migration 9 came before them):
no lake is older, so only the migrations after it ever run on one (through `adapt`; a test
holds them adaptable)."""

LAKE_FORMS: dict[int, str] = {14: "SELECT 1", 18: "SELECT 1"}
"""Migrations whose lake form is another statement: 14 rebuilds the file's `messages` without
its key's index, 18 `step_rows` without its primary key, which a lake never had."""

OPTIONS = (("parquet_compression", "zstd"),)
"""DuckLake options set when a lake is created: raw bodies and SSE lines are repetitive
text, which zstd stores in a fraction of the default (snappy)."""


_WIDE_INTEGER = re.compile(r"\bU?HUGEINT\b", re.IGNORECASE)


def lake_type(kind: str) -> str:
    """A column type as a lake holds it exactly: Parquet has no 128-bit integer and DuckDB
    writes one as a DOUBLE, losing digits (a message's `key` would no longer match its hash),
    so such a column is kept as its decimal text, which compares equal to the number."""
    return _WIDE_INTEGER.sub("VARCHAR", kind)


def adapt(sql: str, number: int = 0) -> str:
    """A migration's SQL as an existing lake takes it: keys and column compressions taken
    out, 128-bit integers as text (`lake_type`); DatabaseError for a construct a lake cannot
    hold (it needs a lake form here)."""
    # A column's key goes, the NOT NULL a primary key implies stays.
    unkeyed = _COLUMN_KEY.sub(lambda m: " NOT NULL" if m[1].upper() != "UNIQUE" else "", sql)
    out = lake_type(_COMPRESSION.sub("", _TABLE_KEY.sub("", unkeyed)))
    left = _UNSUPPORTED.search(re.sub(r"--[^\n]*", "", out))
    if left is not None:
        raise DatabaseError(
            f"migration {number} uses {' '.join(left.group(1).upper().split())}, which a "
            "DuckLake store cannot take (traces/store/lake_schema.py)"
        )
    return out


@functools.cache
def _reference() -> duckdb.DuckDBPyConnection:
    """An in-memory database with the file store's latest schema."""
    conn = duckdb.connect()
    migrate(conn)
    return conn


def create_sql(reference: duckdb.DuckDBPyConnection | None = None) -> list[str]:
    """The statements that create in a lake the schema of `reference` (a database the file
    migrations built; the latest schema by default): tables, views, macros."""
    ref = reference or _reference()
    statements = []
    tables = ref.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'memory' ORDER BY 1"
    ).fetchall()
    for (table,) in tables:
        columns = ref.execute(
            "SELECT column_name, data_type, is_nullable, column_default FROM duckdb_columns() "
            "WHERE database_name = 'memory' AND table_name = ? ORDER BY column_index",
            [table],
        ).fetchall()
        body = ", ".join(
            f'"{name}" {lake_type(kind)}'
            + ("" if nullable else " NOT NULL")
            + ("" if default is None else f" DEFAULT {default}")
            for name, kind, nullable, default in columns
        )
        statements.append(f'CREATE TABLE "{table}" ({body})')
    statements.extend(
        sql
        for (sql,) in ref.execute(
            "SELECT sql FROM duckdb_views() WHERE database_name = 'memory' AND NOT internal "
            "ORDER BY view_name"
        ).fetchall()
    )
    statements.extend(_macros(ref, replace=False))
    return statements


def _macros(ref: duckdb.DuckDBPyConnection, *, replace: bool) -> list[str]:
    """The table macros of `ref` as a lake defines them (`_MACRO_WRAPPERS`)."""
    out = []
    for name, parameters, definition in ref.execute(
        "SELECT function_name, parameters, macro_definition FROM duckdb_functions() "
        "WHERE database_name = 'memory' AND function_type = 'table_macro' AND NOT internal "
        "ORDER BY function_name"
    ).fetchall():
        wrapper = _MACRO_WRAPPERS.get(name, "{}")
        verb = "CREATE OR REPLACE MACRO" if replace else "CREATE MACRO"
        out.append(f"{verb} {name}({', '.join(parameters)}) AS TABLE {wrapper.format(definition)}")
    return out


def version(conn: duckdb.DuckDBPyConnection) -> int:
    """The lake's schema version (0: no store yet)."""
    try:
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    except duckdb.CatalogException:
        return 0
    return int(row[0]) if row else 0


def migrate_lake(conn: duckdb.DuckDBPyConnection) -> bool:
    """Bring the lake attached to `conn` to the latest schema; whether anything changed."""
    if version(conn) == 0 and transaction(conn, lambda: _create(conn)):
        return True
    changed = False
    for number, name, sql in MIGRATIONS:

        def apply(number: int = number, name: str = name, sql: str = sql) -> bool:
            return _apply(conn, number, name, sql)

        changed |= transaction(conn, apply)
    if changed:  # what a migration may have redefined: macros (in their lake form), comments

        def finish() -> None:
            for statement in _macros(_reference(), replace=True):
                conn.execute(statement)
            conn.execute(comment_sql(conn, view_columns=False))

        transaction(conn, finish)
    return changed


def _create(conn: duckdb.DuckDBPyConnection) -> bool:
    """Create the latest schema, unless another writer just did."""
    if version(conn) > 0:
        return False
    for statement in create_sql():
        conn.execute(statement)
    conn.execute(f"COMMENT ON TABLE schema_migrations IS {_COMMENT}")
    conn.executemany(
        "INSERT INTO schema_migrations VALUES (?, ?, now()::TIMESTAMP)",
        [[number, name] for number, name, _ in MIGRATIONS],
    )
    conn.execute(comment_sql(conn, view_columns=False))
    for option, value in OPTIONS:
        conn.execute(f"CALL {ALIAS}.set_option(?, ?)", [option, value])
    return True


def _apply(conn: duckdb.DuckDBPyConnection, number: int, name: str, sql: str) -> bool:
    """Apply one migration unless the lake has it (another writer may have just applied it)."""
    if version(conn) >= number:
        return False
    # First: a change of `schema_migrations` itself, which DuckLake lets only one of two
    # concurrent transactions commit, whatever else the migration changes.
    conn.execute(f"COMMENT ON TABLE schema_migrations IS {_COMMENT}")
    conn.execute(adapt(LAKE_FORMS.get(number, sql), number))
    conn.execute("INSERT INTO schema_migrations VALUES (?, ?, now()::TIMESTAMP)", [number, name])
    return True


def open_lake(store: LakeStore, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection to the lake `store`, migrated (created when new) unless `read_only`;
    read-only, a lake whose schema is behind is upgraded first, as a file is."""
    conn = connect(store, read_only=read_only)
    try:
        if read_only:
            found = version(conn)
            if found == 0:
                raise DatabaseError(f"{store}: not a trace store (no schema_migrations table)")
            if found < MIGRATIONS[-1][0]:
                conn.close()
                open_lake(store, read_only=False).close()
                conn = connect(store, read_only=True)
        else:
            migrate_lake(conn)
    except duckdb.Error as exc:
        conn.close()
        raise DatabaseError(f"{store}: cannot migrate: {error_line(exc)}") from None
    except BaseException:
        conn.close()
        raise
    return conn

"""Read-only SQL over a trace store, as `traces sql` and the viewer's console run it.

Read-only in full, enforced by DuckDB itself rather than by reading the SQL: the connection
loses every way out before the query runs (see `lock_down`), and DuckDB's parser tells the
statement's type, so only one query that returns rows is run.
"""

from __future__ import annotations

import os
from typing import Any

import duckdb

from analyzer.cursor_rows import column_names
from analyzer.output import one_line
from traces.errors import DatabaseError, TracesError
from traces.one_line import exception_line
from traces.store import lake
from traces.store.database import Store, is_served

_LOCKDOWN = (
    # Extensions: none installed or loaded, even the ones DuckDB would fetch by itself.
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    # Python objects in scope are not tables.
    "SET python_enable_replacements = false",
    # No file but the database (and, with --allow-files, the allowed directories), no network.
    "SET enable_external_access = false",
    # Last: nothing above can be changed back by the query.
    "SET lock_configuration = true",
)


def single_query(query: str) -> str:
    """The query, if it is exactly one statement that only reads; else a one-line error."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise TracesError(sql_error(exc, allow_files=True)) from None
    if not statements:
        raise TracesError("SQL error: empty query (give one SELECT statement)")
    if len(statements) > 1:
        raise TracesError(
            f"SQL error: {len(statements)} statements; traces sql runs one query at a time"
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:  # `is` holds on DuckDB 2.0 only
        # DuckDB files INSTALL under LOAD.
        name = "INSTALL/LOAD" if kind == duckdb.StatementType.LOAD else kind.name
        raise TracesError(
            f"SQL error: {name} statements are refused; traces sql is read-only "
            "(one SELECT, WITH, FROM, DESCRIBE, SHOW or SUMMARIZE query)"
        )
    return query


def lock_down(conn: duckdb.DuckDBPyConnection, allow_files: bool) -> None:
    """Take every way out from `conn` (a file opened read-only): extensions, other files
    (unless `allow_files`), the network; then lock its configuration."""
    # A lake store's own data files stay readable (they are the database).
    roots = lake.data_folders(conn)
    if allow_files:
        # Every local path, through DuckDB's own allow-list, so external access itself (the
        # network, extension and secret directories) stays off.
        roots = ["/"] if os.name == "posix" else [os.path.abspath(os.sep)]
    if roots:
        conn.execute("SET allowed_directories = ?", [roots])
    for setting in _LOCKDOWN:
        conn.execute(setting)


def _locked_down(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether the database `conn` is a connection to is locked down already: DuckDB shares
    one database among a process's connections to a file, settings and lock included (the
    viewer answers two queries at once), and a locked configuration refuses every SET."""
    row = conn.execute(
        "SELECT current_setting('lock_configuration'), current_setting('enable_external_access')"
    ).fetchone()
    if row is None or not row[0]:
        return False
    if row[1]:
        raise DatabaseError("the database is locked with external access on; not querying it")
    return True


def sql_error(exc: duckdb.Error, allow_files: bool) -> str:
    """`SQL error: …` in one line, saying why a file or URL was refused."""
    text = one_line(exception_line(exc))
    # DuckDB 1.5 (the lake extra's) refuses a URL for want of httpfs, which it may not load.
    if isinstance(exc, duckdb.PermissionException) or "requires the extension httpfs" in text:
        text += (
            " (--allow-files reads local files, never the network)"
            if allow_files
            else " (traces sql reads other files only with --allow-files)"
        )
    return f"SQL error: {text}"


def read_only_query(
    conn: duckdb.DuckDBPyConnection,
    path: Store,
    statement: str,
    limit: int,
    *,
    allow_files: bool = False,
) -> tuple[list[str], list[tuple[Any, ...]], bool]:
    """Run one statement `single_query` accepted on a connection `open_for_reading` gave,
    locked down first: its column names, at most `limit` rows (0: all), and whether more
    were left out. A DuckDB error becomes a one-line `TracesError`."""
    if not is_served(conn):
        if not _locked_down(conn):
            lock_down(conn, allow_files)
        elif allow_files:
            # Another connection of this process to the same file (which DuckDB shares)
            # locked it down without files: it cannot be opened up again.
            raise DatabaseError(
                f"{path}: --allow-files needs the database to itself; run the query again"
            )
    elif allow_files:
        # The server locked its configuration down for every session at start, files
        # included; it cannot open them for one query.
        raise DatabaseError(
            f"{path}: --allow-files needs the database to itself, and another traces "
            "command is writing it; run the query again once that ends"
        )
    try:
        cursor = conn.execute(statement)
        names = column_names(cursor)
        fetched = cursor.fetchmany(limit + 1) if limit else cursor.fetchall()
    except duckdb.Error as exc:
        raise TracesError(sql_error(exc, allow_files)) from None
    truncated = bool(limit) and len(fetched) > limit
    return names, fetched[: limit or None], truncated

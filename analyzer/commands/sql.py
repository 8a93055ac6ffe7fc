"""`traces sql`: one read-only query over the traces, with a default row limit.

Read-only in full, enforced by DuckDB itself rather than by reading the SQL: the database is
opened read-only, then the connection loses every way out before the query runs — no file
access beyond the database (no COPY TO, EXPORT, ATTACH, no other file read unless
`--allow-files`), no network, no extension installed or loaded, and the configuration is
locked so the query cannot undo any of it. While another command writes the store, the query
runs in a read-only transaction on the store's server, whose configuration is locked down
the same way for every session (`traces.store.server`); `--allow-files` then waits for the
store to be free. DuckDB's parser also tells the statement's type,
and only one query that returns rows (SELECT, WITH, FROM, TABLE, VALUES, DESCRIBE, SHOW,
SUMMARIZE) is run, so `--allow-files` cannot be turned into a way to write.
"""

from __future__ import annotations

import os
from typing import Annotated

import duckdb
import typer

from analyzer.cursor_rows import column_names, dict_rows
from analyzer.options import DataPathOption, DbOption, FormatOption
from analyzer.output import OutputFormat, emit_rows, note, one_line
from traces.errors import DatabaseError, TracesError
from traces.one_line import exception_line
from traces.store import lake
from traces.store.database import is_served, open_for_reading, resolve_db_path

DEFAULT_LIMIT = 1000

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


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("sql")(sql)


def sql(
    query: Annotated[
        str,
        typer.Argument(
            help="One read-only query (SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE). "
            "Tables: `traces schema`."
        ),
    ],
    limit: Annotated[
        int, typer.Option(min=0, help="Print at most this many rows (0: no limit).")
    ] = DEFAULT_LIMIT,
    allow_files: Annotated[
        bool,
        typer.Option(
            "--allow-files",
            help="Let the query read local files (read_csv('x.csv'), read_parquet, "
            "'f.json', glob); never write them, never the network.",
        ),
    ] = False,
    db: DbOption = None,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Run one query against the trace database opened read-only."""
    statement = _single_query(query)
    path = resolve_db_path(db, data_path)
    with open_for_reading(path) as conn:
        if not is_served(conn):
            _lock_down(conn, allow_files)
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
            raise TracesError(_sql_error(exc, allow_files)) from None
        truncated = bool(limit) and len(fetched) > limit
        rows = dict_rows(cursor, fetched[: limit or None])
    emit_rows(rows, fmt, columns=names)
    if truncated:
        note(f"note: showing the first {limit} rows; pass --limit 0 for all")


def _single_query(query: str) -> str:
    """The query, if it is exactly one statement that only reads; else a one-line error."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise TracesError(_sql_error(exc, allow_files=True)) from None
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


def _lock_down(conn: duckdb.DuckDBPyConnection, allow_files: bool) -> None:
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


def _sql_error(exc: duckdb.Error, allow_files: bool) -> str:
    text = one_line(exception_line(exc))
    # DuckDB 1.5 (the lake extra's) refuses a URL for want of httpfs, which it may not load.
    if isinstance(exc, duckdb.PermissionException) or "requires the extension httpfs" in text:
        text += (
            " (--allow-files reads local files, never the network)"
            if allow_files
            else " (traces sql reads other files only with --allow-files)"
        )
    return f"SQL error: {text}"

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

from typing import Annotated

import typer

from analyzer.cursor_rows import unique_names
from analyzer.options import DataPathOption, DbOption, FormatOption
from analyzer.output import OutputFormat, emit_rows, note
from analyzer.readonly_sql import read_only_query, single_query
from traces.store.database import open_for_reading, resolve_db_path

DEFAULT_LIMIT = 1000


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
    statement = single_query(query)
    path = resolve_db_path(db, data_path)
    with open_for_reading(path) as conn:
        names, fetched, truncated = read_only_query(
            conn, path, statement, limit, allow_files=allow_files
        )
        names = unique_names(names)
        rows = [dict(zip(names, row, strict=True)) for row in fetched]
    emit_rows(rows, fmt, columns=names)
    if truncated:
        note(f"note: showing the first {limit} rows; pass --limit 0 for all")

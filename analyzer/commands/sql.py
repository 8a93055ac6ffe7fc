"""`traces sql`: read-only SQL over the traces, with a default row limit."""

from __future__ import annotations

import sys
from typing import Annotated

import duckdb
import typer

from analyzer.options import DbOption, FormatOption
from analyzer.output import OutputFormat, emit_rows
from traces.errors import TracesError
from traces.store.database import open_for_reading, resolve_db_path

DEFAULT_LIMIT = 1000


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("sql")(sql)


def sql(
    query: Annotated[str, typer.Argument(help="SQL to run (read-only). Tables: `traces schema`.")],
    limit: Annotated[
        int, typer.Option(min=0, help="Print at most this many rows (0: no limit).")
    ] = DEFAULT_LIMIT,
    db: DbOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Run a query against the trace database opened read-only."""
    conn = open_for_reading(resolve_db_path(db))
    try:
        try:
            cursor = conn.execute(query)
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TracesError(f"SQL error: {first}") from None
        if cursor.description is None:
            return
        names = [d[0] for d in cursor.description]
        fetched = cursor.fetchmany(limit + 1) if limit else cursor.fetchall()
    finally:
        conn.close()
    truncated = bool(limit) and len(fetched) > limit
    rows = [dict(zip(names, row, strict=True)) for row in fetched[: limit or None]]
    emit_rows(rows, fmt, columns=names)
    if truncated:
        sys.stderr.write(f"note: showing the first {limit} rows; pass --limit 0 for all\n")

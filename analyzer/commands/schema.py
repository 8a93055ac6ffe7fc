"""`traces schema`: every table, view and column of the trace database, documented."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from analyzer.options import DataPathOption, DbOption, FormatOption
from analyzer.output import OutputFormat, emit_rows, stdout_console
from traces.store.database import open_for_reading, open_for_writing, resolve_db_path
from traces.store.schema_docs import TABLES


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("schema")(schema)


def schema(
    table: Annotated[str | None, typer.Argument(help="Only this table or view.")] = None,
    db: DbOption = None,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Describe the schema (from the database file, or a fresh in-memory one if none exists)."""
    path = resolve_db_path(db, data_path)
    # The store itself, or the store's server's session while a command writes its file.
    conn = open_for_reading(path) if path.exists() else open_for_writing(Path(":memory:"))
    with conn:
        rows = [
            # A lake keeps no comment on a view's columns: the words come from the source.
            {"table": t, "column": c, "type": ty, "description": comment or _documented(t, c)}
            for t, c, ty, comment in conn.execute(
                """
                SELECT c.table_name, c.column_name, c.data_type, c.comment
                FROM duckdb_columns() c
                WHERE c.database_name = current_database() AND c.schema_name = 'main'
                  AND NOT c.internal AND (? IS NULL OR c.table_name = ?)
                ORDER BY c.table_name, c.column_index
                """,
                [table, table],
            ).fetchall()
        ]
        tables = dict(
            conn.execute(
                "SELECT table_name, comment FROM duckdb_tables() "
                "WHERE database_name = current_database() AND schema_name = 'main' "
                "UNION ALL SELECT view_name, comment FROM duckdb_views() "
                "WHERE database_name = current_database() AND schema_name = 'main' "
                "AND NOT internal"
            ).fetchall()
        )
    if table is not None and not rows:
        sys.stderr.write(f"error: no table or view named {table!r}\n")
        raise typer.Exit(2)
    if fmt is not OutputFormat.table:
        for row in rows:
            row["table_description"] = tables.get(row["table"])
        emit_rows(rows, fmt)
        return
    console = stdout_console()
    current = None
    for row in rows:
        if row["table"] != current:
            current = row["table"]
            console.print(f"\n[bold]{current}[/bold] — {tables.get(current) or ''}")
        console.print(
            f"  {row['column']:<24} {row['type']:<12} {row['description'] or ''}",
            highlight=False,
            markup=False,
        )


def _documented(table: str, column: str) -> str | None:
    return TABLES.get(table, ("", {}))[1].get(column)

"""`traces schema`: every table, view and column of the trace database, documented."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from analyzer.options import DbOption, FormatOption
from analyzer.output import OutputFormat, emit_rows, stdout_console
from traces.store.database import open_for_reading, open_for_writing, resolve_db_path


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("schema")(schema)


def schema(
    table: Annotated[str | None, typer.Argument(help="Only this table or view.")] = None,
    db: DbOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Describe the schema (from the database file, or a fresh in-memory one if none exists)."""
    path = resolve_db_path(db)
    # The file itself, or the store's server's session while a command writes it.
    conn = open_for_reading(path) if path.exists() else open_for_writing(Path(":memory:"))
    with conn:
        rows = [
            {"table": t, "column": c, "type": ty, "description": comment}
            for t, c, ty, comment in conn.execute(
                """
                SELECT c.table_name, c.column_name, c.data_type, c.comment
                FROM duckdb_columns() c
                WHERE c.schema_name = 'main' AND NOT c.internal AND (? IS NULL OR c.table_name = ?)
                ORDER BY c.table_name, c.column_index
                """,
                [table, table],
            ).fetchall()
        ]
        tables = dict(
            conn.execute(
                "SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'main' "
                "UNION ALL SELECT view_name, comment FROM duckdb_views() "
                "WHERE schema_name = 'main' AND NOT internal"
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

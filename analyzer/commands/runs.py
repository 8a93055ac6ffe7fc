"""`traces runs`: list recorded runs."""

from __future__ import annotations

from typing import Annotated

import typer

from analyzer.options import DbOption, FormatOption
from analyzer.output import OutputFormat, emit_rows
from analyzer.queries import list_runs
from traces.store.database import open_for_reading, resolve_db_path


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("runs")(runs)


def runs(
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only this status (running, completed, failed, interrupted).")
    ] = None,
    origin: Annotated[
        str | None, typer.Option(help="Only runs of this origin: recorded, imported or probe.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    db: DbOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List runs, newest first: status, termination reason, totals and failure summary.

    `failures` sums up the run's findings, most severe first (`error: dropped_call×3; …`);
    it is empty for a clean run and blank until the run has been analyzed.
    """
    conn = open_for_reading(resolve_db_path(db))
    try:
        rows = list_runs(
            conn,
            task=task,
            provider=provider,
            model=model,
            status=status,
            origin=origin,
            limit=limit,
        )
    finally:
        conn.close()
    columns = None
    if fmt is OutputFormat.table:
        columns = [
            "id",
            "task",
            "provider",
            "model",
            "status",
            "termination",
            "success",
            "steps",
            "tool_calls",
            "tool_errors",
            "duration_s",
            "failures",
        ]
    emit_rows(rows, fmt, columns=columns)

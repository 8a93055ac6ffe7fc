"""`traces steps`: how many steps runs take, by task, provider and model."""

from __future__ import annotations

from typing import Annotated

import typer

from analyzer.options import DataPathOption, DbOption, FormatOption
from analyzer.output import OutputFormat, emit_rows
from analyzer.queries import step_distribution, step_histogram
from traces.store.database import open_for_reading, resolve_db_path


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("steps")(steps)


def steps(
    histogram: Annotated[
        bool, typer.Option("--histogram", help="Runs per step-count bucket instead of summary.")
    ] = False,
    buckets: Annotated[int, typer.Option(min=1, max=100, help="Histogram buckets.")] = 10,
    db: DbOption = None,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Step-count distribution of finished runs (min, median, p90, max) by task/provider/model."""
    with open_for_reading(resolve_db_path(db, data_path)) as conn:
        if histogram:
            rows = step_histogram(conn, buckets)
            if fmt is OutputFormat.table:
                width = max((r["runs"] for r in rows), default=1)
                for row in rows:
                    row["bar"] = "█" * max(1, round(20 * row["runs"] / width))
        else:
            rows = step_distribution(conn)
    emit_rows(rows, fmt)

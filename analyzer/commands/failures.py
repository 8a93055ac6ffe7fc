"""`traces failures`: findings by kind × provider × model, with drill-down to the steps."""

from __future__ import annotations

from typing import Annotated

import typer

from analyzer.findings import finding_counts, finding_details
from analyzer.options import DbOption, FormatOption
from analyzer.output import OutputFormat, emit_rows
from analyzer.queries import resolve_run_id
from traces.store.database import open_for_reading, resolve_db_path

_SEVERITY = {3: "error", 2: "warning", 1: "info"}


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("failures")(failures)


def failures(
    kind: Annotated[
        str | None, typer.Option(help="List the findings of this kind, step by step.")
    ] = None,
    run: Annotated[
        str | None, typer.Option(help="List the findings of this run (id, prefix or `last`).")
    ] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    layer: Annotated[
        str | None, typer.Option(help="Only this layer: model, tool, provider, client.")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=0, help="Drill-down: at most this many findings (0: all).")
    ] = 200,
    db: DbOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Count findings by kind, provider and model; --kind or --run lists the steps."""
    conn = open_for_reading(resolve_db_path(db))
    try:
        if kind is None and run is None:
            rows = finding_counts(conn, provider=provider, model=model, layer=layer)
            for row in rows:
                row["severity"] = _SEVERITY[row.pop("rank")]
            columns = [
                "kind",
                "layer",
                "severity",
                "provider",
                "model",
                "findings",
                "runs",
                "of_runs",
            ]
        else:
            run_id = resolve_run_id(conn, run) if run is not None else None
            rows = finding_details(
                conn,
                kind=kind,
                run_id=run_id,
                provider=provider,
                model=model,
                layer=layer,
                limit=limit or None,
            )
            columns = ["run", "step", "kind", "severity", "layer", "provider", "model", "evidence"]
    finally:
        conn.close()
    emit_rows(rows, fmt, columns=columns)

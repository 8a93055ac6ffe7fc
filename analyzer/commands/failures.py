"""`traces failures`: findings by kind × provider × model, with drill-down to the steps, and
the catalogue of every kind the checks can report (`--kinds`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from analyzer.checks.catalogue import KINDS, catalogue_rows, describe
from analyzer.findings import finding_counts, finding_details
from analyzer.options import (
    DataPathOption,
    DbOption,
    FormatOption,
    WideOption,
    check_choice,
    finding_layers,
)
from analyzer.output import OutputFormat, emit_rows
from analyzer.queries import abbreviate_run_ids, resolve_run_id
from traces.store.database import open_for_reading, resolve_db_path

_SEVERITY = {3: "error", 2: "warning", 1: "info"}
_COUNT_COLUMNS = ["kind", "layer", "severity", "provider", "model", "findings", "runs", "of_runs"]
_DETAIL_COLUMNS = [
    "run",
    "step",
    "kind",
    "severity",
    "layer",
    "confidence",
    "provider",
    "model",
    "evidence",
]
_KIND_COLUMNS = ["kind", "layer", "severity", "description"]
# What a narrow terminal leaves out first.
_DROPPED_FIRST = ["confidence", "layer", "severity", "of_runs", "model", "provider"]


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("failures")(failures)


def _columns(base: list[str], fmt: OutputFormat, *extra: str) -> list[str]:
    # Tables stay narrow enough to scan; programs get every field.
    return base if fmt is OutputFormat.table else [*base, *extra]


def _describe_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        row["description"] = describe(str(row["kind"]))


def failures(
    kind: Annotated[
        str | None,
        typer.Option(
            help="List the findings of this kind, step by step.", autocompletion=lambda: [*KINDS]
        ),
    ] = None,
    run: Annotated[
        str | None, typer.Option(help="List the findings of this run (id, prefix or `last`).")
    ] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            help="Only this layer: model, tool, provider, client.", autocompletion=finding_layers
        ),
    ] = None,
    kinds: Annotated[
        bool,
        typer.Option(
            "--kinds",
            help="List every finding kind the checks can report, with its layer, severity "
            "and what it means (no database needed).",
        ),
    ] = False,
    limit: Annotated[
        int, typer.Option(min=0, help="Drill-down: at most this many findings (0: all).")
    ] = 200,
    wide: WideOption = False,
    db: DbOption = None,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Count findings by kind, provider and model; --kind or --run lists the steps; --kinds
    describes every kind.

    A run still being recorded is checked every few seconds: its findings so far are counted
    too, and listed with `so_far` saying how far (`up to step K`), until it has ended and
    been checked whole."""
    check_choice("--layer", layer, finding_layers)
    if kinds:
        rows = [r for r in catalogue_rows() if layer is None or r["layer"] == layer]
        columns = _columns(_KIND_COLUMNS, fmt, "inferred", "check", "covers")
        emit_rows(rows, fmt, columns=columns, droppable=_DROPPED_FIRST, wide=wide)
        return
    title = None
    with open_for_reading(resolve_db_path(db, data_path)) as conn:
        if kind is not None:
            # Kinds this version reports, and any an older or newer one stored.
            stored = [r[0] for r in conn.execute("SELECT DISTINCT kind FROM findings").fetchall()]
            check_choice("--kind", kind, lambda: [*KINDS, *sorted(set(stored) - set(KINDS))])
        if kind is None and run is None:
            rows = finding_counts(conn, provider=provider, model=model, layer=layer)
            for row in rows:
                row["severity"] = _SEVERITY[row.pop("rank")]
            columns = _columns(_COUNT_COLUMNS, fmt, "description")
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
            columns = _columns(_DETAIL_COLUMNS, fmt, "so_far", "description")
            if fmt is OutputFormat.table and any(r["so_far"] for r in rows):
                columns.append("so_far")  # of a run checked while it was recorded
            about = describe(kind) if kind is not None else None
            title = f"{kind}: {about}" if about else None
            if fmt is OutputFormat.table and not wide:
                abbreviate_run_ids(conn, rows, "run")
    _describe_rows(rows)
    emit_rows(
        rows, fmt, columns=columns, title=title, keep=["run"], droppable=_DROPPED_FIRST, wide=wide
    )

"""`traces runs`: list recorded runs."""

from __future__ import annotations

from typing import Annotated

import typer

from analyzer.options import (
    DataPathOption,
    DbOption,
    FormatOption,
    WideOption,
    check_choice,
    run_origins,
    run_statuses,
)
from analyzer.output import OutputFormat, emit_rows, note
from analyzer.queries import abbreviate_run_ids, count_runs, list_runs, so_far_label
from traces.store.database import open_for_reading, resolve_db_path

DEFAULT_LIMIT = 50

_TABLE_COLUMNS = [
    "id",
    "task",
    "provider",
    "model",
    "status",
    "termination",
    "ended_by",
    "success",
    "steps",
    "tool_calls",
    "tool_errors",
    "duration_s",
    "failures",
]
_TAKEN_UP = ["resumptions", "retry_of"]
"""Shown in a table only when some run listed was resumed or is a retry."""
_LABEL = "conversation"
"""Shown in a table listing proxied or imported runs (`--origin`) when one has it: the first
user message, what tells one such run from another."""
# What a narrow terminal leaves out first; the id, provider, status, steps and the failure
# summary stay.
_DROPPED_FIRST = [
    _LABEL,
    *_TAKEN_UP,
    "tool_errors",
    "duration_s",
    "tool_calls",
    "success",
    "ended_by",
    "termination",
    "task",
    "model",
]


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("runs")(runs)


def runs(
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    status: Annotated[
        str | None,
        typer.Option(
            help="Only this status (running, completed, failed, interrupted).",
            autocompletion=run_statuses,
        ),
    ] = None,
    origin: Annotated[
        str | None,
        typer.Option(
            help="Only runs of this origin: recorded, imported, probe or proxy.",
            autocompletion=run_origins,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=0, help="At most this many, newest first (0: all).")
    ] = DEFAULT_LIMIT,
    wide: WideOption = False,
    db: DbOption = None,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """List runs, newest first: status, termination reason, totals and failure summary.

    `ended_by` is the layer a failed run's end is laid on: the layer of the error found on
    its last step (`ended_by_kind` in JSON and CSV), else the termination's own (a second
    turn that came back empty ends `model_error`, and is the provider's when the checks
    found the host's template at fault). `reasoning_tokens_estimated` (JSON, CSV) is true
    when the run's reasoning total adds the client's estimate for steps whose host reported
    none. `failures` sums up the run's findings, most severe first (`error: dropped_call×3; …`);
    it is empty for a clean run and `–` until the run has been analyzed. A run still being
    recorded is checked every few seconds: its failures read `so far, up to step K: …` (in
    JSON and CSV, `findings_so_far` is true and `findings_through_step` is K), as do an
    interrupted run's until it is analyzed again. `resumptions`
    counts the times `record --resume` took a run up again, `retry_of` names the failed run
    a `record --retry-failed` run records again (tables show them when a run has one);
    `--origin proxy` or `imported` adds `conversation`, each run's first user message. A
    proxied run's task is its client's name (from its User-Agent), its provider the upstream.
    Tables show each run id by its shortest unique prefix (`show`, `analyze` and `--run`
    take it); `--wide`, JSON and CSV show it whole.
    """
    check_choice("--status", status, run_statuses)
    check_choice("--origin", origin, run_origins)
    with open_for_reading(resolve_db_path(db, data_path)) as conn:
        rows = list_runs(
            conn,
            task=task,
            provider=provider,
            model=model,
            origin=origin,
            status=status,
            limit=limit or None,
        )
        matching = (
            count_runs(
                conn, task=task, provider=provider, model=model, origin=origin, status=status
            )
            if limit
            else len(rows)
        )
        if fmt is OutputFormat.table and not wide:
            abbreviate_run_ids(conn, rows, "id")
            abbreviate_run_ids(conn, rows, "retry_of")
    columns = None
    if fmt is OutputFormat.table:
        for row in rows:
            label = so_far_label(row)
            if label is not None:  # checked while it was recorded: say how far
                row["failures"] = f"{label}: {row['failures'] or 'none'}"
        columns = _TABLE_COLUMNS + [c for c in _TAKEN_UP if any(r[c] for r in rows)]
        if origin in ("proxy", "imported") and any(r[_LABEL] for r in rows):
            columns.append(_LABEL)
    emit_rows(rows, fmt, columns=columns, keep=["id"], droppable=_DROPPED_FIRST, wide=wide)
    if len(rows) < matching:
        note(f"showing {len(rows)} of {matching} runs; --limit 0 for all")

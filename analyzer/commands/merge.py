"""`traces merge SRC… --into DST`: copy the runs of other stores into one.

Every run a source has and the destination lacks is copied with all its rows (steps,
messages, tool calls and results, findings, ledgers, the imports it came from), all sources
in one transaction: a bad source, a locked destination or Ctrl-C leaves the destination as
it was. Runs already there are skipped, so merging again changes nothing.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from analyzer.options import DataPathOption, FormatOption
from analyzer.output import OutputFormat, emit_rows, note
from analyzer.progress import stderr_progress
from traces.store.database import DB_ENV_VAR, Store, resolve_db_path
from traces.store.merge import SourceReport, merge_stores
from traces.store.tables import STORED

RENAMES_SHOWN = 20
"""Renamed runs named on stderr per source; the rest are counted."""

_COLUMNS = ["source", "runs", "copied", "skipped", "renamed", "steps", "seconds"]
_STEPS = STORED["steps"].table
"""The base table a merge copies the steps of (the view `steps` stores its rows there)."""


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("merge")(merge)


def merge(
    sources: Annotated[
        list[str],
        typer.Argument(help="Stores to copy runs from: database files or lake stores."),
    ],
    into: Annotated[
        str | None,
        typer.Option(
            "--into",
            help=f"Store to copy them into (a file or a lake), created if missing "
            f"[default: ${DB_ENV_VAR}, else ./traces.duckdb].",
            show_default=False,
        ),
    ] = None,
    again: Annotated[
        bool,
        typer.Option(
            "--again",
            help="Also copy runs of files the destination imported under another import "
            "(the same bytes, imported on two machines).",
        ),
    ] = False,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Copy the runs of other stores that the destination lacks; prints one row per source."""
    path = resolve_db_path(into, data_path)
    stores = [resolve_db_path(source) for source in sources]
    started = time.perf_counter()
    with stderr_progress(transient=True) as progress:
        bar = progress.add_task("merging", total=None)
        reports = merge_stores(
            stores,
            path,
            again=again,
            on_step=lambda done, total: progress.update(bar, completed=done, total=total),
        )
    seconds = time.perf_counter() - started
    for report in reports:
        for line in _notes(report, path):
            note(line)
    emit_rows([_row(report) for report in reports], fmt, columns=_COLUMNS)
    runs = sum(r.copied for r in reports)
    steps = sum(r.rows.get(_STEPS, 0) for r in reports)
    note(
        f"merged {_n(runs)} ({steps} steps) from {len(reports)} "
        f"{'store' if len(reports) == 1 else 'stores'} into {path} in {seconds:.1f} s"
    )


def _n(runs: int) -> str:
    return f"{runs} run" if runs == 1 else f"{runs} runs"


def _row(report: SourceReport) -> dict[str, Any]:
    return {
        "source": report.source,
        "runs": report.runs,
        "copied": report.copied,
        "skipped": report.skipped,
        "renamed": len(report.renamed),
        "steps": report.rows.get(_STEPS, 0),
        "seconds": round(report.seconds, 3),
    }


def _notes(report: SourceReport, into: Store) -> list[str]:
    """What stderr says about one source beyond its row."""
    name = report.source
    notes = []
    if report.upgraded_from is not None:
        notes.append(
            f"note: {name} has schema version {report.upgraded_from}: read from an upgraded "
            "temporary copy (the file is unchanged)"
        )
    for old, new in report.renamed[:RENAMES_SHOWN]:
        notes.append(f"note: {name}: run {old} is another run's id in {into}: copied as {new}")
    if len(report.renamed) > RENAMES_SHOWN:
        notes.append(f"… and {len(report.renamed) - RENAMES_SHOWN} more runs of {name} renamed")
    if report.duplicates:
        notes.append(
            f"note: {name}: {_n(report.duplicates)} not copied: {into} imported the same "
            "files under other imports (--again copies them too)"
        )
    if report.running:
        notes.append(
            f"note: {name}: {_n(report.running)} still recording not copied; "
            "merge again once they end"
        )
    if report.interrupted:
        notes.append(
            f"note: {name}: {_n(report.interrupted)} left running by a recorder that stopped: "
            "copied as interrupted"
        )
    if report.outdated:
        notes.append(
            f"note: {name}: {_n(report.outdated)} changed since {into}'s copy was merged "
            f"(ended or resumed); {into} keeps its copy"
        )
    return notes

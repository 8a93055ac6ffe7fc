"""`traces import FILE…`: load exchange logs recorded elsewhere and run the checks on them.

All files of one command, and the checks over the new runs, go in one transaction: a
malformed line (under the default `--on-error refuse`), a file imported before, a locked
database or Ctrl-C at any moment leaves the database as it was.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from analyzer.checks.persist import analyze_runs, finding_counts
from analyzer.checks.records import Finding
from analyzer.checks.stored import FindingCounts
from analyzer.fail_on import check_fail_on_counts
from analyzer.options import DataPathOption, DbOption, FailOnOption, FormatOption
from analyzer.output import OutputFormat, emit_rows, printable, stderr_console
from analyzer.progress import progress_bar
from traces.errors import TracesError
from traces.importing import FileReport, ImportOptions, SkippedLine, import_files
from traces.store.database import Store, resolve_db_path

SKIPPED_SHOWN = 20
"""Skipped lines reported on stderr per file; the rest are counted (and listed in the
`imports` table)."""


class InputFormat(StrEnum):
    """Line format of the files."""

    auto = "auto"
    exchanges = "exchanges"
    k2vv = "k2vv"


class OnError(StrEnum):
    """What a malformed line does."""

    refuse = "refuse"
    skip = "skip"


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("import")(import_)


def import_(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="JSONL exchange logs or K2-Vendor-Verifier result files.", show_default=False
        ),
    ],
    provider: Annotated[
        str | None, typer.Option(help="Provider label for lines that name none [default: unknown].")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model for lines whose request and response name none."),
    ] = None,
    format_in: Annotated[
        InputFormat,
        typer.Option(
            "--format-in", help="Line format; auto detects it per file.", case_sensitive=False
        ),
    ] = InputFormat.auto,
    on_error: Annotated[
        OnError,
        typer.Option(
            "--on-error",
            help="Malformed lines: refuse the whole import (nothing is written), or skip "
            "them and import the rest.",
            case_sensitive=False,
        ),
    ] = OnError.refuse,
    again: Annotated[
        bool, typer.Option("--again", help="Import files even if the same bytes were imported.")
    ] = False,
    analyze: Annotated[
        bool, typer.Option("--analyze/--no-analyze", help="Run the checks on the new runs.")
    ] = True,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Processes that read the files [default: $TRACES_IMPORT_WORKERS, else one "
            "per core (at most 4) for files of 16 MB or more, else 1].",
        ),
    ] = None,
    db: DbOption = None,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
    fail_on: FailOnOption = None,
) -> None:
    """Import exchange logs as runs, then check them; prints one row per file."""
    if fail_on is not None and not analyze:
        raise TracesError("--fail-on needs the checks: it cannot go with --no-analyze")
    options = ImportOptions(
        provider=provider,
        model=model,
        line_format=format_in.value,
        on_error=on_error.value,
        again=again,
        workers=workers,
    )
    err = stderr_console()
    reports, findings = _import_with_progress(
        resolve_db_path(db, data_path), files, options, analyze, err
    )
    for report in reports:
        for line in _notes(report):
            err.print(printable(line, keep=""))
    emit_rows([_row(report, findings, analyze) for report in reports], fmt, columns=_COLUMNS)
    check_fail_on_counts(findings, fail_on)


def _import_with_progress(
    path: Store, files: list[Path], options: ImportOptions, analyze: bool, err: Console
) -> tuple[list[FileReport], dict[str, FindingCounts]]:
    """Import the files with a progress bar (and the skipped lines said on stderr), the checks
    running inside the import's transaction; returns each file's report and each run's
    findings counted (their evidence is stored; holding it all would grow with the file)."""
    shown: Counter[str] = Counter()

    def skipped(file: str, line: SkippedLine) -> None:
        shown[file] += 1
        if shown[file] <= SKIPPED_SHOWN:
            err.print(printable(f"skipped {file}:{line.line}: {line.reason}", keep=""))

    total = sum(f.stat().st_size for f in files if f.is_file())
    findings: dict[str, FindingCounts] = {}

    def keep(run_id: str, found: list[Finding]) -> None:
        findings[run_id] = finding_counts(found)

    with _progress(err) as progress:

        def check(conn: duckdb.DuckDBPyConnection, run_ids: list[str]) -> None:
            """The checks, inside the import's transaction: both commit, or neither."""
            progress.stop()  # one live display at a time: the checks have their own bar
            with progress_bar("checking", len(run_ids)) as advance:
                analyze_runs(
                    conn, run_ids, on_chunk=advance, own_transaction=False, on_findings=keep
                )

        bar = progress.add_task("importing", total=total or None)
        reports = import_files(
            path,
            files,
            options,
            on_progress=lambda n: progress.advance(bar, n),
            on_skip=skipped,
            before_commit=check if analyze else None,
        )
    return reports, findings


_COLUMNS = [
    "file",
    "import",
    "format",
    "lines",
    "exchanges",
    "runs",
    "skipped",
    "findings",
    "kinds",
]


def _notes(report: FileReport) -> list[str]:
    """What stderr says about one imported file beyond its row."""
    notes = []
    if report.skipped > SKIPPED_SHOWN:
        notes.append(
            f"… and {report.skipped - SKIPPED_SHOWN} more skipped lines in {report.path} "
            f'(see `traces sql "select skipped_lines from imports where id = '
            f"'{report.import_id}'\"`)"
        )
    if report.unlabelled:
        notes.append(
            f"note: {report.path} names no provider for {report.unlabelled} runs; "
            "they are labelled `unknown` (pass --provider NAME)"
        )
    return notes


def _progress(err: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def _row(report: FileReport, findings: dict[str, FindingCounts], analyzed: bool) -> dict[str, Any]:
    kinds: Counter[str] = Counter()
    for run in report.runs:
        for (_, kind), n in findings.get(run, FindingCounts()).items():
            kinds[kind] += n
    return {
        "file": report.path,
        "import": report.import_id,
        "format": report.format,
        "lines": report.lines,
        "exchanges": report.exchanges,
        "runs": len(report.runs),
        "skipped": report.skipped,
        "findings": sum(kinds.values()) if analyzed else None,
        "kinds": dict(kinds.most_common()) if analyzed else None,
    }

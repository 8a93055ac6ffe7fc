"""Reading the files of an import into rows, line by line.

`read_files` validates each line (`formats`), hands the exchanges to a `RunBuilder` and the
builder's rows to a sink: the import's DuckDB writer.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from traces.importing.builder import RunBuilder
from traces.importing.formats import LoggedExchange, read_exchange_line, read_k2vv_line
from traces.importing.lines import (
    ImportFileError,
    LineError,
    LineFormat,
    detect,
    looks_like_json_document,
    numbered_lines,
    parse_object,
)
from traces.importing.toolsets import ToolSets
from traces.importing.writer import RowSink

InputFormat = Literal["auto", "exchanges", "k2vv"]
OnError = Literal["refuse", "skip"]

MAX_SKIPPED_KEPT = 1000
"""Skipped lines listed in `imports.skipped_lines` (all are counted in `skipped`)."""

_READERS: dict[LineFormat, Callable[[dict[str, object], int, datetime], LoggedExchange]] = {
    "exchanges": read_exchange_line,
    "k2vv": read_k2vv_line,
}


@dataclass(frozen=True)
class ImportOptions:
    """How to read the files of one `traces import`."""

    provider: str | None = None
    """Provider label of runs whose lines name none."""
    model: str | None = None
    """Model of runs whose lines (request, response) name none."""
    line_format: InputFormat = "auto"
    """Line format of every file, or `auto` to detect it per file."""
    on_error: OnError = "refuse"
    """Malformed lines: refuse the whole import, or skip them and import the rest."""
    again: bool = False
    """Import files whose bytes were imported before."""


@dataclass(frozen=True)
class SkippedLine:
    """A malformed line left out under `--on-error skip`."""

    line: int
    reason: str


@dataclass
class FileReport:
    """What one file became."""

    path: str
    import_id: str
    format: str
    sha256: str
    lines: int = 0
    exchanges: int = 0
    runs: list[str] = field(default_factory=list)
    skipped: int = 0
    skipped_lines: list[SkippedLine] = field(default_factory=list)
    defaulted: int = 0
    """Runs whose lines name no provider: labelled with `--provider`, else `unknown`."""
    unlabelled: int = 0
    """Runs labelled `unknown` because neither the file nor `--provider` named a provider."""


ProgressCallback = Callable[[int], None]
"""Told how many more bytes were read."""
SkipCallback = Callable[[str, SkippedLine], None]
"""Told of each skipped line, with the file's path."""


def read_files(
    sink: RowSink,
    jobs: Sequence[tuple[Path, str]],
    options: ImportOptions,
    now: datetime,
    on_progress: ProgressCallback | None = None,
    on_skip: SkipCallback | None = None,
) -> list[FileReport]:
    """Read each (file, sha256) of `jobs` into `sink`; a report per file.

    Raises ImportFileError (one line naming the file, line and field) for bad input.
    """
    known: set[str] = set()
    tool_sets = ToolSets()
    return [
        _read_file(sink, path, digest, options, now, known, tool_sets, on_progress, on_skip)
        for path, digest in jobs
    ]


def _read_file(
    sink: RowSink,
    path: Path,
    digest: str,
    options: ImportOptions,
    now: datetime,
    known: set[str],
    tool_sets: ToolSets,
    on_progress: ProgressCallback | None,
    on_skip: SkipCallback | None,
) -> FileReport:
    report = FileReport(
        path=str(path),
        import_id=f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}",
        format=options.line_format,
        sha256=digest,
    )
    line_format: LineFormat | None = None if options.line_format == "auto" else options.line_format
    builder: RunBuilder | None = None
    for number, raw in numbered_lines(path):
        if on_progress is not None:
            on_progress(len(raw))
        if not raw.strip():
            continue
        report.lines += 1
        try:
            obj = parse_object(raw)
            if line_format is None:
                line_format = detect(obj)
                if line_format is None:
                    raise LineError(
                        None,
                        "neither an exchange (`request` with `response`, `chunks` or `error`) "
                        "nor a K2-Vendor-Verifier result (`data_index`, `request`, `status`)",
                    )
            logged = _READERS[line_format](obj, number, now)
        except LineError as err:
            if report.lines == 1 and looks_like_json_document(raw):
                raise ImportFileError(
                    f"{path}: not JSON Lines: it looks like one JSON document; "
                    "an import file holds one exchange per line"
                ) from None
            if options.on_error == "refuse":
                raise ImportFileError(
                    f"{path}:{number}: {err} (--on-error skip imports the other lines)"
                ) from None
            skipped = SkippedLine(number, str(err))
            report.skipped += 1
            if len(report.skipped_lines) < MAX_SKIPPED_KEPT:
                report.skipped_lines.append(skipped)
            if on_skip is not None:
                on_skip(str(path), skipped)
            continue
        if builder is None:
            builder = RunBuilder(
                sink,
                import_id=report.import_id,
                path=str(path),
                sha256=digest,
                file_format=line_format,
                provider=options.provider,
                model=options.model,
                known_messages=known,
                tool_sets=tool_sets,
            )
            report.format = line_format
        builder.add(logged)
    if report.lines == 0:
        raise ImportFileError(f"{path}: empty file: no exchange to import")
    if builder is None:
        first = report.skipped_lines[0]
        raise ImportFileError(
            f"{path}: no exchange to import: all {report.lines} lines are malformed "
            f"(line {first.line}: {first.reason})"
        )
    report.runs = builder.finish()
    report.exchanges = builder.exchanges
    report.defaulted = builder.defaulted
    report.unlabelled = builder.defaulted if options.provider is None else 0
    return report

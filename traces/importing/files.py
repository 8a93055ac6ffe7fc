"""Reading the files of an import into rows, file by file: each in this process, or a large
one by the worker pool (`parallel`) while this process inserts; the same rows either way.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from traces.importing.lines import ImportFileError, LineFormat, numbered_lines
from traces.importing.parallel import WorkerPool
from traces.importing.reading import (
    FileReport,
    FileShare,
    ImportOptions,
    LineReader,
    ProgressCallback,
    SkipCallback,
    SkippedLine,
)
from traces.importing.toolsets import ToolSets
from traces.importing.writer import ImportSink

MAX_SKIPPED_KEPT = 1000
"""Skipped lines listed in `imports.skipped_lines` (all are counted in `skipped`)."""


def read_files(
    sink: ImportSink,
    jobs: Sequence[tuple[Path, str]],
    options: ImportOptions,
    now: datetime,
    on_progress: ProgressCallback | None = None,
    on_skip: SkipCallback | None = None,
    pool: WorkerPool | None = None,
) -> list[FileReport]:
    """Read each (file, sha256) of `jobs` into `sink`; a report per file.

    Files `options.workers_for` gives more than one process are read by `pool`'s workers
    (the caller starts and stops it) when there is one. Raises ImportFileError (one line
    naming the file, line and field) for bad input.
    """
    known: set[str] = set()
    tool_sets = ToolSets()
    reports = []
    for path, digest in jobs:
        report = FileReport(
            path=str(path),
            import_id=f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}",
            format=options.line_format,
            sha256=digest,
        )
        parallel = pool is not None and options.workers_for(_size(path)) > 1
        reader = LineReader(
            sink,
            path,
            digest,
            report.import_id,
            options,
            now,
            known,
            tool_sets,
            _skipped(report, on_skip),
            line_format=None if options.line_format == "auto" else options.line_format,
        )
        if parallel:
            assert pool is not None
            share = _read_in_workers(pool, reader, sink, on_progress)
        else:
            share = _read_here(reader, on_progress)
        reports.append(_complete(report, share, reader.format, options))
    return reports


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # read in this process, which says why it cannot be read


def _skipped(report: FileReport, on_skip: SkipCallback | None) -> Callable[[SkippedLine], None]:
    def skipped(line: SkippedLine) -> None:
        report.skipped += 1
        if len(report.skipped_lines) < MAX_SKIPPED_KEPT:
            report.skipped_lines.append(line)
        if on_skip is not None:
            on_skip(report.path, line)

    return skipped


def _read_here(reader: LineReader, on_progress: ProgressCallback | None) -> FileShare:
    for number, raw in numbered_lines(reader.path):
        if on_progress is not None:
            on_progress(len(raw))
        if raw.strip():
            reader.read(number, raw)
    return reader.finish()


def _read_in_workers(
    pool: WorkerPool,
    reader: LineReader,
    sink: ImportSink,
    on_progress: ProgressCallback | None,
) -> FileShare:
    """Find the format here (and report the malformed lines before it), then let the
    workers read the rest from the first line that has it."""
    offset = 0
    for number, raw in numbered_lines(reader.path):
        if raw.strip() and reader.find_format(number, raw):
            assert reader.format is not None
            share = pool.read(reader, sink, number, offset, reader.format, on_progress)
            share.lines += reader.lines
            return share
        offset += len(raw)
        if on_progress is not None:
            on_progress(len(raw))
    return reader.finish()


def _complete(
    report: FileReport, share: FileShare, line_format: LineFormat | None, options: ImportOptions
) -> FileReport:
    report.lines = share.lines
    if report.lines == 0:
        raise ImportFileError(f"{report.path}: empty file: no exchange to import")
    if share.exchanges == 0:
        first = report.skipped_lines[0]
        raise ImportFileError(
            f"{report.path}: no exchange to import: all {report.lines} lines are malformed "
            f"(line {first.line}: {first.reason})"
        )
    assert line_format is not None
    report.format = line_format
    report.runs = [run_id for _, run_id in share.runs]
    report.exchanges = share.exchanges
    report.defaulted = share.defaulted
    report.unlabelled = share.defaulted if options.provider is None else 0
    return report

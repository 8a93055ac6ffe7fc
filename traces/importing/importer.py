"""Importing files into the trace database: all of them, or nothing.

One transaction covers every file of a command (see `writer`) and, when the caller asks,
the checks over its runs (`before_commit`): a malformed line under `refuse`, a duplicate
import, a DuckDB error or Ctrl-C at any moment rolls back whatever the earlier files added,
and a database file created for the import is removed again (with its `.wal`). Files are
fingerprinted before the database is opened, so an unreadable or already imported file is
refused before anything is parsed.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from traces.errors import DatabaseError
from traces.importing.files import read_files
from traces.importing.lines import ImportFileError, fingerprint
from traces.importing.parallel import WorkerPool
from traces.importing.reading import (
    FileReport,
    ImportOptions,
    ProgressCallback,
    SkipCallback,
    SkippedLine,
)
from traces.importing.writer import ImportWriter
from traces.one_line import one_line
from traces.store.database import (
    Store,
    interrupted_statement,
    is_served,
    open_for_writing,
    remove_created,
)
from traces.store.lake import error_line, is_conflict, is_lake, redacted
from traces.store.server import lost_to_a_concurrent_commit
from traces.store.tables import ImportRow

__all__ = ["BeforeCommit", "FileReport", "ImportOptions", "SkippedLine", "import_files"]

BeforeCommit = Callable[[duckdb.DuckDBPyConnection, list[str]], None]
"""Called with the import's connection and the new run ids, inside the import's transaction
once every row is inserted: what it writes (the checks' findings) commits with the import."""


def import_files(
    db_path: Store,
    paths: Sequence[Path],
    options: ImportOptions | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    on_skip: SkipCallback | None = None,
    before_commit: BeforeCommit | None = None,
) -> list[FileReport]:
    """Import every file in one transaction and return a report per file.

    Raises a one-line TracesError naming the file (and line and field) for bad input, and
    DatabaseError when the database cannot be opened or written; either way the database
    is left as it was.
    """
    options = options or ImportOptions()
    # Workers for the large files start first: they import while the files are hashed.
    workers = max((options.workers_for(_size(path)) for path in paths), default=1)
    if workers == 1:
        return _import(db_path, paths, options, None, on_progress, on_skip, before_commit)
    with WorkerPool(workers) as pool:
        return _import(db_path, paths, options, pool, on_progress, on_skip, before_commit)


def _import(
    db_path: Store,
    paths: Sequence[Path],
    options: ImportOptions,
    pool: WorkerPool | None,
    on_progress: ProgressCallback | None,
    on_skip: SkipCallback | None,
    before_commit: BeforeCommit | None,
) -> list[FileReport]:
    prints: list[tuple[Path, str]] = []
    seen: dict[str, Path] = {}
    for path in paths:
        digest, _ = fingerprint(path)
        if digest in seen and not options.again:
            raise ImportFileError(
                f"{path}: same bytes as {seen[digest]}, given before it; "
                "pass --again to import both"
            )
        seen.setdefault(digest, path)
        prints.append((path, digest))
    existed = db_path.exists()
    # A bulk load allocates millions of objects that all live until their batch is written;
    # the cyclic collector would rescan them over and over and find nothing (parsed JSON
    # has no cycles). Off for the import, as it was after.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for attempt in range(1, IMPORT_ATTEMPTS + 1):
            try:
                return _import_all(
                    db_path, prints, options, existed, pool, on_progress, on_skip, before_commit
                )
            except _Conflict as conflict:
                # Another writer committed into the store: it exists now, whoever created it,
                # and the next attempt must not remove it if that one fails too.
                existed = True
                if attempt == IMPORT_ATTEMPTS:
                    raise DatabaseError(
                        f"{db_path}: import failed: other writers changed the store while it "
                        f"ran, {IMPORT_ATTEMPTS} times ({conflict}); nothing was imported"
                    ) from None
        raise AssertionError("unreachable: the last attempt returns or raises")
    finally:
        if collecting:
            gc.enable()


IMPORT_ATTEMPTS = 5
"""Times an import is made when another writer's commit conflicts with its own: on a lake
(DuckLake refuses to commit runs inserted while another writer updated runs, which every
recording does as its runs end), and on a served file when another session committed a
message the import then inserted (`lost_to_a_concurrent_commit`). It starts over from the
files, as nothing of it was stored."""


class _Conflict(Exception):
    """The import lost to another writer's commit; it may be tried again."""


def _import_all(
    db_path: Store,
    prints: list[tuple[Path, str]],
    options: ImportOptions,
    existed: bool,
    pool: WorkerPool | None,
    on_progress: ProgressCallback | None,
    on_skip: SkipCallback | None,
    before_commit: BeforeCommit | None,
) -> list[FileReport]:
    try:
        conn = open_for_writing(db_path)
    except BaseException:  # locked, not ours, or Ctrl-C while creating or migrating it
        if not existed:
            remove_created(db_path)
        raise
    writer = ImportWriter(conn)
    try:
        # One DuckDB thread: batches of a few thousand rows gain nothing from a second one
        # (their cost is converting Python values), and the second core is reading. (The
        # store's server, which a file is written through, runs on one already.)
        if not is_served(conn):
            conn.execute("SET threads = 1")
        if not options.again:
            _refuse_reimport(conn, prints)
        now = datetime.now(UTC).replace(tzinfo=None)
        reports = read_files(writer, prints, options, now, on_progress, on_skip, pool)
        imported_at = datetime.now(UTC).replace(tzinfo=None)
        for report in reports:
            writer.add("imports", _import_row(report, options, imported_at))
        if before_commit is not None:
            writer.flush()
            before_commit(conn, [run for report in reports for run in report.runs])
        writer.commit()
    except BaseException as exc:
        lake, served = is_lake(conn), is_served(conn)
        conflict = (lake and is_conflict(exc)) or (served and lost_to_a_concurrent_commit(exc))
        # A conflict proves another session committed into this store: never remove it then.
        _abandon(writer, conn, db_path, existed or conflict)
        if interrupted_statement(exc):
            # Ctrl-C while DuckDB runs a statement: it stops and says so in its own words.
            raise KeyboardInterrupt from None
        if conflict:
            raise _Conflict(error_line(exc)) from None
        if isinstance(exc, duckdb.Error):
            detail = one_line(redacted(str(exc)))
            raise DatabaseError(f"{db_path}: import failed: {detail}") from None
        raise
    conn.close()
    return reports


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # `fingerprint` says why it cannot be read


def _import_row(report: FileReport, options: ImportOptions, imported_at: datetime) -> ImportRow:
    return ImportRow(
        id=report.import_id,
        path=report.path,
        sha256=report.sha256,
        format=report.format,
        provider=options.provider if report.defaulted else None,
        lines=report.lines,
        exchanges=report.exchanges,
        runs=len(report.runs),
        skipped=report.skipped,
        skipped_lines=json.dumps(
            [{"line": s.line, "reason": s.reason} for s in report.skipped_lines]
        )
        if report.skipped_lines
        else None,
        imported_at=imported_at,
    )


def _refuse_reimport(conn: duckdb.DuckDBPyConnection, prints: list[tuple[Path, str]]) -> None:
    for path, digest in prints:
        row = conn.execute(
            "SELECT id, imported_at, runs FROM imports WHERE sha256 = ? "
            "ORDER BY imported_at LIMIT 1",
            [digest],
        ).fetchone()
        if row is not None:
            import_id, when, runs = row
            raise ImportFileError(
                f"{path}: already imported on {when:%Y-%m-%d %H:%M} UTC as import {import_id} "
                f"({runs} runs); pass --again to import it again"
            )


def _abandon(
    writer: ImportWriter, conn: duckdb.DuckDBPyConnection, db_path: Store, existed: bool
) -> None:
    """Roll back, close, and remove a database file this import created."""
    # Closing without a commit discards the transaction all the same.
    with contextlib.suppress(duckdb.Error):
        writer.rollback()
    conn.close()
    if not existed:
        remove_created(db_path)

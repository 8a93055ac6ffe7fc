"""Finding and opening the trace database, with one-line errors instead of tracebacks."""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb

from traces.errors import DatabaseError
from traces.store import lake
from traces.store.compaction import COMPACTING_MIGRATION, compact_in_place
from traces.store.lake import LakeStore
from traces.store.migrations import current_version, latest_version, migrate
from traces.store.schema_docs import apply_comments

DEFAULT_DB = "traces.duckdb"
DB_ENV_VAR = "TRACES_DB"
LOCK_WAIT_S = 3.0
"""How long opening waits for another process to release the file before giving up."""
STORAGE_VERSION = "v1.5.0"
"""The file format new stores are written in, whatever DuckDB writes them: DuckDB 2 writes its
own by default, which DuckDB 1.5 cannot read, and the `lake` extra installs DuckDB 1.5 (its
extensions exist for no later one). In this format a store moves between the two as it is.
Measured: the same trace rows take the same bytes in both formats."""


Store = Path | LakeStore
"""Where traces are stored: a DuckDB file, or a DuckLake (`traces.store.lake`)."""


def resolve_db_path(explicit: str | Path | None, data_path: str | Path | None = None) -> Store:
    """`--db` if given, else `$TRACES_DB`, else `./traces.duckdb`; a name starting with
    `ducklake:` is a lake store, whose data path is `data_path` or `$TRACES_DATA_PATH`."""
    name = str(explicit) if explicit else os.environ.get(DB_ENV_VAR) or DEFAULT_DB
    if lake.is_lake_name(name):
        return lake.parse(name, data_path)
    return Path(name)


def _connect(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    # A writer that is finishing (a recording's writer process committing what it received
    # after its parent was killed, or closing) holds the lock for a moment longer: wait for
    # it a little before calling the file locked.
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return duckdb.connect(
                str(path),
                read_only=read_only,
                config={"storage_compatibility_version": STORAGE_VERSION},
            )
        except duckdb.IOException as exc:
            text = str(exc).splitlines()[0]
            if "with version number" in text:  # a newer DuckDB's own format
                text += (
                    f" (this is DuckDB {duckdb.__version__}: open the store with the DuckDB "
                    "that wrote it; README, Lake stores, says how to convert it)"
                )
            if "lock" not in text.lower():
                raise DatabaseError(f"{path}: cannot open database: {text}") from None
            if time.monotonic() >= deadline:
                raise DatabaseError(
                    f"{path}: the database is locked by another process (a recording in progress?)"
                ) from None
            time.sleep(0.05)
        except duckdb.Error as exc:
            raise DatabaseError(
                f"{path}: not a trace database: {str(exc).splitlines()[0]}"
            ) from None


def interrupted_statement(exc: BaseException) -> bool:
    """Whether `exc` is DuckDB saying a signal stopped the statement it ran (Ctrl-C): its
    client turns the KeyboardInterrupt into an error of its own, `Query interrupted`."""
    if isinstance(exc, duckdb.InterruptException):
        return True
    return isinstance(exc, RuntimeError) and str(exc).startswith("Query interrupted")


def open_for_writing(path: Store) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) and migrate the database for a writer. Ctrl-C meanwhile
    raises KeyboardInterrupt with the file released, whichever statement it stopped."""
    if isinstance(path, LakeStore):
        from traces.store.lake_schema import open_lake

        return open_lake(path, read_only=False)
    if path.parent and not path.parent.exists():
        raise DatabaseError(f"{path}: directory {path.parent} does not exist")
    conn = _connect(path, read_only=False)
    try:
        before = current_version(conn)
        after = migrate(conn)
        if after != before:
            apply_comments(conn)
    except BaseException as exc:  # release the file, so a caller can remove one it created
        conn.close()
        if interrupted_statement(exc):
            raise KeyboardInterrupt from None
        if isinstance(exc, duckdb.Error):
            raise DatabaseError(f"{path}: cannot migrate: {str(exc).splitlines()[0]}") from None
        raise
    # A store that existed before the tables were rebuilt compactly: its old blocks are free
    # but still in the file, which is rewritten once without them.
    if 0 < before < COMPACTING_MIGRATION <= after and compact_in_place(conn, path):
        conn = _connect(path, read_only=False)
    return conn


def open_for_reading(path: Store) -> duckdb.DuckDBPyConnection:
    """Open an existing database read-only, upgrading its schema first if it is behind."""
    if isinstance(path, LakeStore):
        from traces.store.lake_schema import open_lake

        return open_lake(path, read_only=True)
    if not path.exists():
        raise DatabaseError(
            f"{path}: no trace database here (record a run first, or pass --db / set {DB_ENV_VAR})"
        )
    conn = _connect(path, read_only=True)
    try:
        # Asked directly rather than through duckdb_tables(), which costs more than every
        # other query of a `traces runs` (a missing table is a catalog error).
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        version = int(row[0]) if row else 0
    except duckdb.CatalogException:
        version = 0
    except duckdb.Error as exc:
        conn.close()
        raise DatabaseError(f"{path}: not a trace database: {str(exc).splitlines()[0]}") from None
    if version == 0:
        conn.close()
        raise DatabaseError(f"{path}: not a trace database (no schema_migrations table)")
    if version < latest_version():
        # An older file: upgrade once with a short-lived writer, then read as asked.
        conn.close()
        open_for_writing(path).close()
        conn = _connect(path, read_only=True)
    return conn


def remove_created(path: Store) -> None:
    """Remove a database file a command created and then abandoned, with its write-ahead
    log, so a failed or interrupted first write leaves no file behind. (A lake created for it
    stays: an empty store, as its schema was committed.)"""
    if not isinstance(path, Path):
        return
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)

"""Finding and opening the trace database, with one-line errors instead of tracebacks.

While a process writes a store file, it is the store's server (`traces.store.server`): every
other command, reading or writing, gets a session on it instead of opening the file, which
DuckDB would refuse. A session behaves like the DuckDB connection these functions return
(`traces.store.remote`). When no server runs, a read opens the file directly, read-only, as
any program could: `traces runs` on a quiet store starts nothing. A lake store is opened by
each process itself: its catalog takes writers from many processes.
"""

from __future__ import annotations

import os
import re
import time
import uuid  # noqa: F401  (see below)
from pathlib import Path
from typing import cast

import duckdb

from traces.errors import DatabaseError
from traces.store import lake, rendezvous
from traces.store.compaction import COMPACTING_MIGRATION, compact_in_place
from traces.store.lake import LakeStore
from traces.store.migrations import current_version, latest_version, migrate
from traces.store.remote import RemoteConnection
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
    # A server that is closing (committing what a killed recorder sent, checkpointing) holds
    # the lock for a moment longer, one that is starting has the file before it listens:
    # wait for either a little before calling the file locked.
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        if read_only:
            served = _served(path, rendezvous.READ)
            if served is not None:
                return served
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
                    f"{path}: the database is locked by another program{_holder(text)} "
                    "(traces commands share a store; others must close it first)"
                ) from None
            time.sleep(0.05)
        except duckdb.Error as exc:
            raise DatabaseError(
                f"{path}: not a trace database: {str(exc).splitlines()[0]}"
            ) from None


def _holder(lock_error: str) -> str:
    """` (process N, PROGRAM)` when DuckDB's lock error names the process holding the file."""
    found = re.search(r"held in (\S+) \(PID (\d+)\)", lock_error)
    return f" (process {found[2]}, {os.path.basename(found[1])})" if found else ""


def _served(path: Path, mode: str) -> duckdb.DuckDBPyConnection | None:
    """A session on the running server of `path`, if one answers."""
    session = rendezvous.connect(path, mode)
    return None if session is None else _remote(session, path)


def _remote(session: rendezvous.Session, path: Path) -> duckdb.DuckDBPyConnection:
    # Typed as what it stands for: it does what the commands do with a DuckDB connection
    # (execute with parameters, fetch, description, close) and refuses the rest.
    return cast(duckdb.DuckDBPyConnection, RemoteConnection(session, path))


def is_served(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether `conn` is a session on the store's server rather than the store itself."""
    return isinstance(conn, RemoteConnection)


def staging_directory(path: Store) -> Path | None:
    """A private directory for files the server of the store file `path` may attach (an
    analysis's worker outputs): the only one it reads besides the database's own. None for
    a lake store, whose connections are this process's own."""
    if not isinstance(path, Path):
        return None
    where = rendezvous.address(path)
    rendezvous.prepare(where)
    return where.staging


def is_served_now(path: Store) -> bool:
    """Whether a server has the store file at `path` open (another command is writing it)."""
    return isinstance(path, Path) and rendezvous.listening(path)


# DuckDB imports Python's `uuid` module the first time a statement needs it (migrating a new
# store does); a Ctrl-C during that import comes back as "Required module 'uuid' failed to
# import", which is why it is imported here, once, with this module.


def interrupted_statement(exc: BaseException) -> bool:
    """Whether `exc` is DuckDB saying a signal stopped the statement it ran (Ctrl-C): its
    client turns the KeyboardInterrupt into an error of its own, `Query interrupted`, or
    into an import error when the signal came while it imported a module it needed."""
    if isinstance(exc, duckdb.InterruptException):
        return True
    text = str(exc)
    if isinstance(exc, RuntimeError) and text.startswith("Query interrupted"):
        return True
    return "failed to import, due to the following Python exception:\nKeyboardInterrupt" in text


def open_for_writing(path: Store) -> duckdb.DuckDBPyConnection:
    """A connection that writes the store: for a file, a session on its server, started
    (creating and migrating the file) when none runs; transactions are the caller's, as with
    the file itself."""
    if isinstance(path, LakeStore):
        from traces.store.lake_schema import open_lake

        return open_lake(path, read_only=False)
    if str(path) == ":memory:":
        return open_file_for_writing(path)
    if path.parent and not path.parent.exists():
        raise DatabaseError(f"{path}: directory {path.parent} does not exist")
    return _remote(rendezvous.connect_or_start(path, rendezvous.WRITE), path)


def open_file_for_writing(path: Path) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) and migrate the database file itself: what the store's
    server does (anyone else goes through `open_for_writing`). Ctrl-C meanwhile raises
    KeyboardInterrupt with the file released, whichever statement it stopped."""
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
    if is_served(conn):
        return conn  # the server opened the file: it is migrated
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
        # An older file: upgrade once (a server opens it), then read as asked.
        conn.close()
        open_for_writing(path).close()
        conn = _connect(path, read_only=True)
    return conn


def remove_created(path: Store) -> None:
    """Remove a database file a command created and then abandoned, with its write-ahead
    log, so a failed or interrupted first write leaves no file behind. (A lake created for it
    stays: an empty store, as its schema was committed.)"""
    # Not while a server still has it: another command started using the new file.
    if not isinstance(path, Path) or is_served_now(path) or _holds_records(path):
        return
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)


def _holds_records(path: Path) -> bool:
    """Whether a file holds a run or an import: then it is not only what the abandoning
    command created. Commands started together each find no file and each think they
    created it; one may fail after another committed and left (its server gone between
    them), and removing the file then lost that other's records. Unknown (locked, unreadable)
    counts as holding them: an empty file left behind costs nothing."""
    if not path.exists():
        return False
    try:
        conn = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return True
    try:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM imports)"
        ).fetchone()
    except duckdb.CatalogException:
        return False  # created, never migrated: nothing in it
    except duckdb.Error:
        return True
    finally:
        conn.close()
    return bool(row and row[0])

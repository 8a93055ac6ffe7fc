"""Finding and opening the trace database, with one-line errors instead of tracebacks.

While a process writes a store, it is the store's server (`traces.store.server`): every
other command, reading or writing, gets a session on it instead of opening the file, which
DuckDB would refuse. A session behaves like the DuckDB connection these functions return
(`traces.store.remote`). When no server runs, a read opens the file directly, read-only, as
any program could: `traces runs` on a quiet store starts nothing.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import cast

import duckdb

from traces.errors import DatabaseError
from traces.store import rendezvous
from traces.store.migrations import current_version, latest_version, migrate
from traces.store.remote import RemoteConnection
from traces.store.schema_docs import apply_comments

DEFAULT_DB = "traces.duckdb"
DB_ENV_VAR = "TRACES_DB"
LOCK_WAIT_S = 3.0
"""How long opening waits for another process to release the file before giving up."""


def resolve_db_path(explicit: str | Path | None) -> Path:
    """`--db` if given, else `$TRACES_DB`, else `./traces.duckdb`."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(DB_ENV_VAR)
    return Path(from_env) if from_env else Path(DEFAULT_DB)


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
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            text = str(exc).splitlines()[0]
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
    """Whether `conn` is a session on the store's server rather than the file itself."""
    return isinstance(conn, RemoteConnection)


def staging_directory(path: Path) -> Path:
    """A private directory for files the store's server may attach (an analysis's worker
    outputs): the only one it reads besides the database's own."""
    where = rendezvous.address(path)
    rendezvous.prepare(where)
    return where.staging


def is_served_now(path: Path) -> bool:
    """Whether a server has the database at `path` open (some command is using it)."""
    return rendezvous.listening(path)


def open_for_writing(path: Path) -> duckdb.DuckDBPyConnection:
    """A connection that writes the database: a session on its server, started (creating
    and migrating the file) when none runs. Transactions are the caller's, as with a file."""
    if str(path) == ":memory:":
        return open_file_for_writing(path)
    if path.parent and not path.parent.exists():
        raise DatabaseError(f"{path}: directory {path.parent} does not exist")
    return _remote(rendezvous.connect_or_start(path, rendezvous.WRITE), path)


def open_file_for_writing(path: Path) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) and migrate the database file itself: what the store's
    server does (anyone else goes through `open_for_writing`)."""
    if path.parent and not path.parent.exists():
        raise DatabaseError(f"{path}: directory {path.parent} does not exist")
    conn = _connect(path, read_only=False)
    try:
        before = current_version(conn)
        after = migrate(conn)
        if after != before:
            apply_comments(conn)
    except duckdb.Error as exc:
        conn.close()
        raise DatabaseError(f"{path}: cannot migrate: {str(exc).splitlines()[0]}") from None
    except BaseException:  # Ctrl-C: release the file, so a caller can remove one it created
        conn.close()
        raise
    return conn


def open_for_reading(path: Path) -> duckdb.DuckDBPyConnection:
    """Open an existing database read-only, upgrading its schema first if it is behind."""
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

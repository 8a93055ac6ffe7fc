"""Rewriting a store file without its free blocks: after the migration that rebuilds tables, and
when the writer that leaves a file finds much of it free.

DuckDB never shrinks a file: the blocks a dropped table held are reused by later writes, but
the file keeps its size. Migration 9 rebuilds the largest tables in a more compact form, so a
store it upgrades would be larger on disk than before (the old tables' blocks, free, beside
the new ones) until a later recording filled them. Copying the database (`COPY FROM DATABASE`:
schema, compression, keys, macros, views, comments and rows in their order) into a fresh file
and putting it in the store's place gives the user the smaller file at once.

The copy is made while this process still holds the store's write lock, and the new file is
renamed over the old one before the lock is released: any other process that opens the store
afterwards opens the new file; none can have opened the old one in between. If anything goes
wrong, the copy is removed and the store stays as it was (only larger).

Writing leaves free blocks too: each checkpoint rewrites the last row group of every table it
appended to and frees the old copy, which the next checkpoint reuses. So a recorded file holds
about one row group of each table free whatever its size: most of a small store (40% of the
file after 100,000 recorded steps), little of a large one. The store's server, when its last
client has left and it has closed the file, rewrites it when the free blocks are a large
share of it (`compact_when_it_pays`): then the file is at most a few row groups, and the copy
is short (measured, README Disk use: a 6,020-step recording, 16 MB of which 41% free, became
8.7 MB; opening it through a server and leaving took 2.3 s in all on a busy 2-core machine).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import duckdb

COMPACTING_MIGRATION = 9
"""The migration after which an upgraded store is rewritten (see the module docstring)."""

FREE_SHARE = 0.25
"""The share of a file's blocks that must be free for its writer to rewrite it on leaving."""
FREE_BYTES = 4 << 20
"""... and at least this many bytes of them: a small store's few free blocks are not worth a
rewrite at every close."""


def compact_in_place(conn: duckdb.DuckDBPyConnection, path: Path) -> bool:
    """Rewrite the store `conn` holds open for writing at `path` into a fresh file that
    replaces it, and close `conn`: True. False, `conn` untouched and still open, when the
    copy could not be made."""
    copy = path.with_name(path.name + ".compact")
    for leftover in (copy, copy.with_name(copy.name + ".wal")):
        leftover.unlink(missing_ok=True)
    try:
        # An empty WAL: the old file holds everything, and closing it later writes nothing.
        conn.execute("CHECKPOINT")
        source = conn.execute("SELECT current_database()").fetchone()
        assert source is not None
        conn.execute(f"ATTACH '{_quoted(copy)}' AS compacted")
        try:
            conn.execute(f'COPY FROM DATABASE "{source[0]}" TO compacted')
        finally:
            conn.execute("DETACH compacted")
        _fsync(copy)
        os.replace(copy, path)
        _fsync(path.parent)
    except (duckdb.Error, OSError):
        for leftover in (copy, copy.with_name(copy.name + ".wal")):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
        return False
    conn.close()
    return True


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def worth_compacting(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store `conn` has open holds enough free blocks to be rewritten
    (`FREE_SHARE`, `FREE_BYTES`)."""
    row = conn.execute(
        "SELECT block_size, total_blocks, free_blocks FROM pragma_database_size() "
        "WHERE database_name = current_database()"
    ).fetchone()
    if row is None or not row[1]:
        return False
    block, total, free = (int(v) for v in row)
    return free >= FREE_SHARE * total and free * block >= FREE_BYTES


def compact_when_it_pays(path: Path, storage_version: str) -> bool:
    """Rewrite the store file at `path` without its free blocks if `worth_compacting` says so
    (the caller has just closed it, and holds it against other writers); whether it did. A
    file another process has open, or that cannot be copied, is left as it is."""
    copy = path.with_name(path.name + ".compact")
    for leftover in (copy, copy.with_name(copy.name + ".wal")):  # of a rewrite killed midway
        with contextlib.suppress(OSError):
            leftover.unlink(missing_ok=True)
    try:
        # Read-only first: it never creates a file (one a failed first write just removed).
        probe = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return False  # gone, or another process has it: another close will do it
    try:
        if not worth_compacting(probe):
            return False
    except duckdb.Error:
        return False
    finally:
        probe.close()
    try:
        conn = duckdb.connect(str(path), config={"storage_compatibility_version": storage_version})
    except duckdb.Error:
        return False
    if compact_in_place(conn, path):
        return True
    conn.close()
    return False


def compact_file(path: Path) -> tuple[int, int]:
    """Rewrite the store file at `path` without its free blocks now, whatever their share:
    its size before and after, in bytes. Refused (DatabaseError, exit 4) while a server has
    the file: that server rewrites it when its last client leaves (`compact_when_it_pays`)."""
    from traces.errors import DatabaseError
    from traces.store import rendezvous
    from traces.store.database import open_file_for_writing

    if not path.exists():
        raise DatabaseError(f"{path}: no trace database here")
    if rendezvous.listening(path):
        raise DatabaseError(
            f"{path}: in use by a recording or a reader; its server rewrites the file without "
            "its free blocks when the last of them leaves"
        )
    before = _file_bytes(path)
    conn = open_file_for_writing(path)
    row = conn.execute(
        "SELECT free_blocks FROM pragma_database_size() WHERE database_name = current_database()"
    ).fetchone()
    if not row or not row[0] or not compact_in_place(conn, path):
        conn.execute("CHECKPOINT")
        conn.close()
    return before, _file_bytes(path)


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + ".wal")) if p.exists())

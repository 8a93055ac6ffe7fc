"""Rewriting a store file without its free blocks, once, after the migration that rebuilds tables.

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
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import duckdb

COMPACTING_MIGRATION = 9
"""The migration after which an upgraded store is rewritten (see the module docstring)."""


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

"""Compacting a lake store: DuckLake's own maintenance calls, as its `CHECKPOINT` makes them
but for their order (see `compact_lake`).

A lake written step by step grows far beyond its data (measured, README "Lake stores"): each
recorder's commit adds a snapshot to the catalog, small commits are kept inlined in the
catalog's tables, and every flush of them writes a Parquet file of a few rows for each table.
A 10,234-step recording took 3,591 bytes a step (an 18 MB SQLite catalog, 966 snapshots and
2,710 files); the same store compacted takes 630. DuckLake never does this by itself;
`traces compact` does:

1. `ducklake_flush_inlined_data`: the rows still in the catalog go to Parquet;
2. `ducklake_merge_adjacent_files`: each table's small files become few large ones;
3. `ducklake_expire_snapshots`: snapshots older than the window are forgotten (time travel to
   them ends; the current one always stays, with every row);
4. `ducklake_cleanup_old_files`: the files only expired snapshots used, once scheduled for
   deletion longer than the window, are deleted;
5. `ducklake_delete_orphaned_files`: files no snapshot knows (a writer killed mid-commit),
   an hour old or older (`ORPHANS_KEPT`), are deleted;
6. a SQLite catalog is vacuumed (SQLite never gives freed pages back otherwise); a
   PostgreSQL server does that itself (autovacuum).

The window (`keep`) protects reads in progress on other machines: a query reads the files of
the snapshot it began with, and deleting them under it would fail it. Writers may go on
recording meanwhile: each call is its own transaction, done again when another writer's commit
conflicts with it (`lake.transaction`). No step is ever lost: every call keeps the current
snapshot's rows.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import duckdb

from traces.errors import DatabaseError
from traces.store import lake
from traces.store.lake import ALIAS, LakeStore

_METADATA = f"__ducklake_metadata_{ALIAS}"
"""Where DuckLake attaches the catalog's own tables of the lake attached as `ALIAS`."""


@dataclass(frozen=True)
class LakeSize:
    """What a lake holds, as its catalog and its data path tell."""

    live_files: int
    """Data and delete files the current snapshot reads."""
    live_bytes: int
    snapshots: int
    pending_files: int
    """Files scheduled for deletion, kept until the window has passed."""
    disk_bytes: int | None
    """Every file under a local data path (None for a URL), live or not."""
    catalog_bytes: int | None
    """The catalog's file with its journal (None for a PostgreSQL server)."""


@dataclass(frozen=True)
class LakeCompaction:
    """`compact_lake`'s account: the lake before and after, and the time it took."""

    before: LakeSize
    after: LakeSize
    seconds: float


ORPHANS_KEPT = timedelta(hours=1)
"""Files no snapshot knows are deleted only once this old, whatever `keep`: a writer on
another machine writes its Parquet files before the commit that names them, and deleting one
meanwhile would lose that commit's rows."""


def compact_lake(store: LakeStore, keep: timedelta) -> LakeCompaction:
    """Run DuckLake's maintenance on `store`, keeping what reads begun within `keep` need.

    The order is `CHECKPOINT`'s but for the merge, which comes before the expiry: the
    snapshot before the merge is the last to name the small files, and expiring it in the same
    run lets the cleanup delete them. Snapshots are expired by their ids, chosen here, and
    scheduled files deleted only when every one is older than the window: on a SQLite
    catalog DuckLake 1.5's `older_than` compares its text times and takes every snapshot and
    file for old. Raises DatabaseError (one line) when the lake cannot be opened or a call
    fails for another reason than a concurrent commit.
    """
    from traces.store.lake_schema import open_lake

    started = time.perf_counter()
    conn = open_lake(store, read_only=False)
    try:
        before = lake_size(conn, store)
        _call(conn, store, f"ducklake_flush_inlined_data('{ALIAS}')")
        _call(conn, store, f"ducklake_merge_adjacent_files('{ALIAS}')")
        expired = _older_snapshots(conn, keep)
        if expired:
            _call(conn, store, f"ducklake_expire_snapshots('{ALIAS}', versions => {expired})")
        if not _recently_scheduled(conn, keep):
            _call(conn, store, f"ducklake_cleanup_old_files('{ALIAS}', cleanup_all => true)")
        orphans = max(keep, ORPHANS_KEPT).total_seconds()
        _call(
            conn,
            store,
            f"ducklake_delete_orphaned_files('{ALIAS}', "
            f"older_than => now() - INTERVAL {int(orphans)} SECOND)",
        )
    finally:
        conn.close()
    _vacuum_catalog(store)
    conn = open_lake(store, read_only=True)
    try:
        after = lake_size(conn, store)
    finally:
        conn.close()
    return LakeCompaction(before, after, time.perf_counter() - started)


def _call(conn: duckdb.DuckDBPyConnection, store: LakeStore, call: str) -> None:
    """One maintenance call in a transaction of its own, done again on a conflict."""
    try:
        lake.transaction(conn, lambda: conn.execute(f"CALL {call}").fetchall())
    except duckdb.Error as exc:
        name = call.split("(", 1)[0]
        raise DatabaseError(f"{store}: {name} failed: {lake.error_line(exc)}") from None


def _older_snapshots(conn: duckdb.DuckDBPyConnection, keep: timedelta) -> list[int]:
    """The snapshots taken longer than `keep` ago, except the current one."""
    rows = conn.execute(
        f"""
        SELECT snapshot_id FROM ducklake_snapshots('{ALIAS}')
        WHERE snapshot_time < now() - to_microseconds(?::BIGINT)
          AND snapshot_id < (SELECT max(snapshot_id) FROM ducklake_snapshots('{ALIAS}'))
        ORDER BY snapshot_id
        """,
        [int(keep.total_seconds() * 1_000_000)],
    ).fetchall()
    return [int(row[0]) for row in rows]


def _recently_scheduled(conn: duckdb.DuckDBPyConnection, keep: timedelta) -> bool:
    """Whether a file was scheduled for deletion within `keep`: a read begun before may
    still need it, so none is deleted yet."""
    row = conn.execute(
        f"""
        SELECT count(*) FROM {_METADATA}.ducklake_files_scheduled_for_deletion
        WHERE schedule_start::TIMESTAMPTZ >= now() - to_microseconds(?::BIGINT)
        """,
        [int(keep.total_seconds() * 1_000_000)],
    ).fetchone()
    return bool(row and row[0])


def lake_size(conn: duckdb.DuckDBPyConnection, store: LakeStore) -> LakeSize:
    """The files, snapshots and bytes of the lake `conn` has attached."""
    row = conn.execute(
        f"""
        SELECT count(*), coalesce(sum(file_size_bytes), 0) FROM (
            SELECT file_size_bytes FROM {_METADATA}.ducklake_data_file WHERE end_snapshot IS NULL
            UNION ALL
            SELECT file_size_bytes FROM {_METADATA}.ducklake_delete_file
            WHERE end_snapshot IS NULL
        )
        """
    ).fetchone()
    live_files, live_bytes = (int(v) for v in row) if row else (0, 0)
    counts = conn.execute(
        f"""
        SELECT (SELECT count(*) FROM {_METADATA}.ducklake_snapshot),
               (SELECT count(*) FROM {_METADATA}.ducklake_files_scheduled_for_deletion)
        """
    ).fetchone()
    snapshots, pending = (int(v) for v in counts) if counts else (0, 0)
    folders = lake.data_folders(conn)
    return LakeSize(
        live_files=live_files,
        live_bytes=live_bytes,
        snapshots=snapshots,
        pending_files=pending,
        disk_bytes=_folder_bytes(Path(folders[0])) if folders else None,
        catalog_bytes=_catalog_bytes(store),
    )


def _folder_bytes(folder: Path) -> int:
    total = 0
    for directory, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:  # deleted meanwhile by another process's cleanup
                continue
    return total


def _catalog_bytes(store: LakeStore) -> int | None:
    found = store.catalog_file
    if found is None:
        return None
    total = 0
    for suffix in ("", "-wal", "-journal", ".wal"):
        try:
            total += Path(f"{found}{suffix}").stat().st_size
        except OSError:
            continue
    return total


def _vacuum_catalog(store: LakeStore) -> None:
    """Give a SQLite catalog's free pages back to the disk, in the writers' turn (a busy
    catalog is left as it is: the next compaction vacuums it)."""
    if store.kind != "sqlite" or store.catalog_file is None:
        return
    with open(f"{store.catalog_file}.writer-lock", "a+b") as handle:
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            catalog = sqlite3.connect(store.catalog_file, timeout=10)
            try:
                catalog.execute("VACUUM")
            except sqlite3.OperationalError:
                pass
            finally:
                catalog.close()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""`traces compact`: give a store's unused space back to the disk.

A file store is rewritten without its free blocks (its server already does it when its last
client leaves and a quarter of the file is free; this does it now, whatever the share, and is
refused while the file is in use). A lake store gets DuckLake's maintenance
(`traces.store.lake_maintenance`): inlined rows flushed to Parquet, snapshots older than
`--keep` expired, small files merged, files no snapshot needs deleted, a SQLite catalog
vacuumed. Every recorded step stays; recorders may go on writing to a lake meanwhile.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from analyzer.options import DataPathOption, DbOption, FormatOption
from analyzer.output import OutputFormat, emit_rows, note
from traces.store.database import resolve_db_path
from traces.store.lake import LakeStore

_COLUMNS = ["store", "what", "before", "after"]


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("compact")(compact)


def compact(
    db: DbOption = None,
    data_path: DataPathOption = None,
    keep: Annotated[
        float,
        typer.Option(
            "--keep",
            min=0,
            help="Lake stores: keep snapshots, and files replaced, for this many minutes, so "
            "that reads begun on other machines finish (0: none, when nothing else reads).",
        ),
    ] = 10.0,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Give a store's unused space back to the disk: a file rewritten without its free
    blocks, a lake's small files merged and its expired snapshots and files removed."""
    store = resolve_db_path(db, data_path)
    rows = _lake(store, timedelta(minutes=keep)) if isinstance(store, LakeStore) else _file(store)
    emit_rows(rows, fmt, columns=_COLUMNS)


def _file(path: Path) -> list[dict[str, Any]]:
    from traces.store.compaction import compact_file

    before, after = compact_file(path)
    note(f"compacted {path}: {before:,} bytes -> {after:,}")
    return [{"store": str(path), "what": "file bytes", "before": before, "after": after}]


def _lake(store: LakeStore, keep: timedelta) -> list[dict[str, Any]]:
    from traces.store.lake_maintenance import compact_lake

    done = compact_lake(store, keep)
    b, a = done.before, done.after
    rows = [
        ("live data files", b.live_files, a.live_files),
        ("live data bytes", b.live_bytes, a.live_bytes),
        ("snapshots", b.snapshots, a.snapshots),
        ("files awaiting deletion", b.pending_files, a.pending_files),
        ("data path bytes", b.disk_bytes, a.disk_bytes),
        ("catalog bytes", b.catalog_bytes, a.catalog_bytes),
    ]
    if a.pending_files:
        note(
            f"{a.pending_files} replaced files are kept for --keep {keep.total_seconds() / 60:g} "
            "minutes (reads in progress may need them): compact again later to delete them"
        )
    note(f"compacted {store} in {done.seconds:.1f} s")
    return [
        {"store": str(store), "what": what, "before": before, "after": after}
        for what, before, after in rows
        if before is not None or after is not None
    ]

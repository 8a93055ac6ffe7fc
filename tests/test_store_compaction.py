"""A store file left with many free blocks by its writers is rewritten without them when the
store's server closes it (`traces.store.compaction.compact_when_it_pays`), losing nothing.

Free blocks come from checkpoints: each rewrites the last row group of a table it appended
to and frees the old copy. The stores here are written as the writers write them, through
the store's server, commit after commit with a checkpoint between.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from traces.store import compaction
from traces.store.database import STORAGE_VERSION, open_for_reading, open_for_writing
from traces.store.inserts import insert_rows
from traces.store.tables import MessageRow


def _write(db: Path, commits: int, body_bytes: int) -> None:
    """`commits` transactions of 1,000 messages of random (incompressible) bodies, each
    followed by a checkpoint, through the store's server."""
    conn = open_for_writing(db)
    try:
        for commit in range(commits):
            rows = [
                MessageRow(f"h{commit}-{i}", "user", f'{{"c": "{os.urandom(body_bytes).hex()}"}}')
                for i in range(1000)
            ]
            conn.execute("BEGIN TRANSACTION")
            insert_rows(conn, "messages", rows)
            conn.execute("COMMIT")
            conn.execute("CHECKPOINT")
    finally:
        conn.close()


def _state(db: Path) -> tuple[int, list[tuple[object, ...]]]:
    conn = open_for_reading(db)
    try:
        row = conn.execute(
            "SELECT free_blocks FROM pragma_database_size() "
            "WHERE database_name = current_database()"
        ).fetchone()
        assert row is not None
        rows = conn.execute("SELECT hash, role, body, key FROM messages ORDER BY rowid").fetchall()
    finally:
        conn.close()
    return int(row[0]), rows


def test_a_file_mostly_free_is_rewritten_without_its_free_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "t.duckdb"
    _write(db, 4, 300)
    free, before = _state(db)
    assert free > 0  # below the server's threshold: left as it was
    monkeypatch.setattr(compaction, "FREE_BYTES", 0)
    assert compaction.compact_when_it_pays(db, STORAGE_VERSION)
    free, after = _state(db)
    assert free == 0
    assert after == before
    assert [p.name for p in tmp_path.iterdir() if "compact" in p.name] == []
    # Nothing left to gain: a second call leaves the file alone.
    assert not compaction.compact_when_it_pays(db, STORAGE_VERSION)


def test_a_file_another_process_holds_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "t.duckdb"
    _write(db, 3, 300)
    monkeypatch.setattr(compaction, "FREE_BYTES", 0)
    reader = duckdb.connect(str(db), read_only=True)
    try:
        size = db.stat().st_size
        assert not compaction.compact_when_it_pays(db, STORAGE_VERSION)
        assert db.stat().st_size == size
    finally:
        reader.close()


@pytest.mark.slow
def test_the_server_rewrites_the_file_it_leaves_mostly_free(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    # About 24 MB of bodies in 8 commits: the checkpoints leave over `FREE_BYTES` free, more
    # than `FREE_SHARE` of the file (measured: 45 blocks free, 11.8 MB).
    _write(db, 8, 1500)
    free, rows = _state(db)
    assert free == 0
    assert len(rows) == 8000
    assert db.stat().st_size < 8000 * 3000 * 1.2


def test_a_file_that_is_gone_is_not_created(tmp_path: Path) -> None:
    # A failed first write removes the file it created once its server has left.
    db = tmp_path / "gone.duckdb"
    assert not compaction.compact_when_it_pays(db, STORAGE_VERSION)
    assert list(tmp_path.iterdir()) == []

"""`traces compact`: a lake's maintenance and a file's rewrite give space back and keep every row;
refusals are one line with the documented exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from traces.sim.server import SimServer
from traces.store.database import Store, open_for_reading, open_for_writing, resolve_db_path

from conftest import run_cli
from recording import record

pytestmark = [pytest.mark.usefixtures("lake_extensions"), pytest.mark.slow]


def _every_row(store: Store) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table and view of the store, in a stable order."""
    with open_for_reading(store) as conn:
        names = [
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = 'main' UNION ALL SELECT view_name FROM duckdb_views() "
                "WHERE database_name = current_database() AND schema_name = 'main' "
                "AND NOT internal"
            ).fetchall()
        ]
        return {
            name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
            for name in names
        }


def _compact(*args: str) -> dict[str, dict[str, Any]]:
    done = run_cli("compact", *args, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return {row["what"]: row for row in json.loads(done.stdout)}


def test_a_lake_compacted_keeps_every_row_in_fewer_files_and_snapshots(
    sim: SimServer, tmp_path: Path
) -> None:
    name = f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}"
    lake = resolve_db_path(name, tmp_path / "data")
    record(lake, sim.base_url, "chain_short", repeat=3)  # type: ignore[arg-type]
    before = _every_row(lake)
    assert before["steps"]

    # Within the window nothing a read in progress may need goes: the snapshots stay.
    kept = _compact("--db", name, "--keep", "10")
    assert kept["snapshots"]["after"] > 1
    assert _every_row(lake) == before

    done = _compact("--db", name, "--keep", "0")
    assert done["snapshots"]["before"] > 1 and done["snapshots"]["after"] == 1
    assert done["files awaiting deletion"]["after"] == 0
    # The rows the recorders' small commits left in the catalog went to Parquet.
    assert done["catalog bytes"]["after"] < kept["catalog bytes"]["before"]
    # What is on disk is what the lake reads, no more: every replaced file deleted.
    assert done["data path bytes"]["after"] == done["live data bytes"]["after"] > 0
    assert _every_row(lake) == before
    # The lake still takes recordings, and reads them with the others.
    record(lake, sim.base_url, "chain_short")  # type: ignore[arg-type]
    with open_for_reading(lake) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (4,)


def test_a_file_is_rewritten_without_its_free_blocks_unless_in_use(
    sim: SimServer, tmp_path: Path
) -> None:
    db = tmp_path / "traces.duckdb"
    record(db, sim.base_url, "chain_short", repeat=2)
    with open_for_writing(db) as conn:  # free blocks: a table's rows deleted
        conn.execute("DELETE FROM findings")
        conn.execute("CHECKPOINT")
    before = _every_row(db)
    with open_for_writing(db):
        refused = run_cli("compact", "--db", str(db))
        assert refused.returncode == 4
        assert refused.stderr.count("\n") == 1 and "in use" in refused.stderr, refused.stderr
    [row] = _compact("--db", str(db)).values()
    assert row["after"] <= row["before"]
    assert _every_row(db) == before


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    missing = run_cli("compact", "--db", str(tmp_path / "none.duckdb"))
    assert missing.returncode == 4 and missing.stderr.count("\n") == 1, missing.stderr
    assert not (tmp_path / "none.duckdb").exists()
    negative = run_cli("compact", "--db", str(tmp_path / "none.duckdb"), "--keep", "-1")
    assert negative.returncode == 2 and "Traceback" not in negative.stderr

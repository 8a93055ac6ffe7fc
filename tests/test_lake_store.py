"""Lake stores on local catalogs (SQLite, a DuckDB file): the schema DuckLake can hold, the
store's own round trips run on a lake, what DuckLake lacks handled, errors in one line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import pytest
import test_findings_so_far as so_far
import test_store as file_store

from analyzer.checks.persist import analyze_runs
from traces.errors import DatabaseError
from traces.importing import ImportOptions, import_files
from traces.sim.server import SimServer
from traces.store.database import open_for_reading, open_for_writing, resolve_db_path
from traces.store.inserts import insert_rows
from traces.store.lake import LakeStore, connect, transaction
from traces.store.lake_schema import FIRST_VERSION, adapt, create_sql, lake_type
from traces.store.migrations import MIGRATIONS
from traces.store.tables import MessageRow

from conftest import REPO, TASKS, migrate_to, run_cli
from recording import record
from resume_helpers import cut
from run_keys import disagreements, without_keys

# Every test here opens a lake: loading the extensions alone takes most of a second.
pytestmark = [pytest.mark.usefixtures("lake_extensions"), pytest.mark.slow]

IMPORTS = REPO / "tests" / "fixtures" / "import"


@pytest.fixture
def lake(tmp_path: Path) -> LakeStore:
    """A new lake store with a SQLite catalog (created on first open)."""
    store = resolve_db_path(f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}", tmp_path / "data")
    assert isinstance(store, LakeStore)
    return store


def _columns(conn: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    # DuckLake keeps defaults as text: it reports a column without one as defaulting to
    # NULL, and a number quoted ('0', cast to the column's type on insert).
    return conn.execute(
        "SELECT table_name, column_name, data_type, is_nullable, "
        "regexp_replace(nullif(column_default, 'NULL'), '^''(-?[0-9]+)''$', '\\1') "
        "FROM duckdb_columns() WHERE database_name = current_database() "
        "ORDER BY table_name, column_index"
    ).fetchall()


def _columns_as_in_a_lake(file: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    """A file store's columns as a lake holds them: its tables' 128-bit integers as text."""
    tables = {name for (name,) in file.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return [
        (t, c, lake_type(str(kind)) if t in tables else kind, *rest)
        for t, c, kind, *rest in _columns(file)
    ]


def _objects(conn: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
    views = conn.execute(
        "SELECT view_name FROM duckdb_views() "
        "WHERE database_name = current_database() AND NOT internal ORDER BY 1"
    ).fetchall()
    macros = conn.execute(
        "SELECT function_name FROM duckdb_functions() WHERE database_name = current_database() "
        "AND function_type = 'table_macro' AND NOT internal ORDER BY 1"
    ).fetchall()
    return [v for (v,) in views], [m for (m,) in macros]


def test_a_new_lake_has_the_file_schema_without_keys(lake: LakeStore, tmp_path: Path) -> None:
    with open_for_writing(tmp_path / "file.duckdb") as file, open_for_writing(lake) as conn:
        # The same columns: a message's key a 64-bit number (migration 20), as on a file.
        as_in_a_lake = _columns_as_in_a_lake(file)
        assert _columns(conn) == as_in_a_lake
        assert ("messages", "key", "UBIGINT") in {row[:3] for row in as_in_a_lake}
        assert _objects(conn) == _objects(file)
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
        assert versions == [(number,) for number, _, _ in MIGRATIONS]
        options = dict(
            conn.execute("SELECT option_name, value FROM ducklake_options('store')").fetchall()
        )
        assert options["parquet_compression"] == "zstd"
    assert not any("PRIMARY KEY" in statement for statement in create_sql())
    # Opening again changes nothing (and creates nothing twice).
    with open_for_writing(lake) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (
            len(MIGRATIONS),
        )


def test_a_migration_is_adapted_or_refused() -> None:
    sql = "CREATE TABLE t (id VARCHAR PRIMARY KEY, a INT, b INT, PRIMARY KEY (a, b));"
    assert adapt(sql) == "CREATE TABLE t (id VARCHAR NOT NULL, a INT, b INT);"
    sql = "CREATE TABLE t (k UHUGEINT UNIQUE, body JSON USING COMPRESSION ZSTD);"
    assert adapt(sql) == "CREATE TABLE t (k VARCHAR, body JSON);"
    for refused in (
        "CREATE INDEX i ON runs (task)",
        "CREATE SEQUENCE s",
        "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING",
        # DuckLake 1.0 then fails moving NULLs to Parquet (duckdb/ducklake#1383).
        "ALTER TABLE runs ALTER COLUMN steps DROP NOT NULL",
    ):
        with pytest.raises(DatabaseError, match="cannot take"):
            adapt(refused, 12)


def test_an_older_lake_is_upgraded_by_the_later_migrations(lake: LakeStore, tmp_path: Path) -> None:
    # A lake created by an older release: the schema of version 6, as a lake holds it.
    old = duckdb.connect()
    migrate_to(old, 6)
    applied = [[n, name] for n, name, _ in MIGRATIONS[:6]]
    conn = connect(lake, read_only=False)

    def create() -> None:
        for statement in create_sql(old):
            conn.execute(statement)
        conn.executemany("INSERT INTO schema_migrations VALUES (?, ?, now())", applied)

    transaction(conn, create)
    conn.close()
    # Opening it applies the later migrations, adapted, and it holds the file's schema.
    with open_for_writing(tmp_path / "file.duckdb") as file, open_for_writing(lake) as conn:
        assert _columns(conn) == _columns_as_in_a_lake(file)
        assert _objects(conn) == _objects(file)
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
        assert versions == [(number,) for number, _, _ in MIGRATIONS]
    # No lake is older than FIRST_VERSION: every migration after it must have a lake form.
    for number, _, sql in MIGRATIONS:
        if number > FIRST_VERSION:
            adapt(sql, number)


def test_migration_13_numbers_the_messages_of_a_lake_in_their_order(lake: LakeStore) -> None:
    # A lake at version 12 holding a message twice (two writers stored it at once).
    old = duckdb.connect()
    migrate_to(old, 12)
    conn = connect(lake, read_only=False)

    def create() -> None:
        for statement in create_sql(old):
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO schema_migrations VALUES (?, ?, now())",
            [[n, name] for n, name, _ in MIGRATIONS[:12]],
        )
        conn.execute(
            "INSERT INTO messages SELECT h, 'user', '{}', md5_number(h)::VARCHAR "
            "FROM (VALUES ('z'), ('a'), ('m'), ('a')) v(h)"
        )
        conn.execute(
            "INSERT INTO step_message_keys SELECT 'r', i, i, md5_number(h)::VARCHAR, 1 "
            "FROM (VALUES (0, 'z'), (1, 'a'), (2, 'z')) v(i, h)"
        )

    transaction(conn, create)
    conn.close()
    with open_for_writing(lake) as conn:
        numbered = conn.execute("SELECT hash, seq FROM messages ORDER BY seq").fetchall()
        assert numbered == [("z", 1), ("a", 2), ("m", 3), ("a", 4)]  # in stored order
        # A row names the least number of its message; the view gives one row per row.
        assert conn.execute(
            "SELECT step_idx, seq FROM step_message_keys ORDER BY step_idx"
        ).fetchall() == [(0, 1), (1, 2), (2, 1)]
        assert conn.execute(
            "SELECT step_idx, hash FROM step_messages ORDER BY step_idx"
        ).fetchall() == [(0, "z"), (1, "a"), (2, "z")]


def test_the_stores_round_trips_hold_on_a_lake(lake: LakeStore) -> None:
    # The file store's own tests of the recorder, run against a lake: rows of runs, steps,
    # messages (deduplicated), tool calls and results; a dead recorder's runs closed by the
    # next writer; requests rebuilt exactly by `request_messages`, history rewritten or not.
    file_store.test_recorder_round_trip_and_message_dedup(lake)  # type: ignore[arg-type]
    file_store.test_runs_of_dead_recorders_become_interrupted(lake)  # type: ignore[arg-type]


def test_requests_rebuild_on_a_lake(lake: LakeStore) -> None:
    file_store.test_requests_rebuild_even_when_history_is_rewritten(lake)  # type: ignore[arg-type]


def test_messages_stored_twice_by_racing_writers_read_as_one(lake: LakeStore) -> None:
    file_store.test_requests_rebuild_even_when_history_is_rewritten(lake)  # type: ignore[arg-type]
    with open_for_reading(lake) as conn:
        before = [
            conn.execute("SELECT * FROM request_messages('r', ?)", [i]).fetchall() for i in range(4)
        ]
        stored = conn.execute("SELECT hash, role, body FROM messages").fetchall()
    with open_for_writing(lake) as conn:
        # The anti-join: rows already stored are not stored again ...
        rows = [MessageRow(*row) for row in stored]
        transaction(conn, lambda: insert_rows(conn, "messages", rows))
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (len(stored),)
        # ... but two writers racing can both store one; what DuckLake would then hold:
        conn.execute("INSERT INTO messages SELECT * FROM messages")
    with open_for_reading(lake) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (2 * len(stored),)
        after = [
            conn.execute("SELECT * FROM request_messages('r', ?)", [i]).fetchall() for i in range(4)
        ]
    assert after == before


@pytest.mark.slow
def test_record_analyze_and_read_a_lake_with_each_local_catalog(tmp_path: Path) -> None:
    for db in (
        f"ducklake:sqlite:{tmp_path / 'catalog.sqlite'}",
        f"ducklake:{tmp_path / 'catalog.ducklake'}",
    ):
        data = tmp_path / db.rsplit(".", 1)[-1]
        recorded = run_cli(
            "record",
            "-t",
            str(TASKS / "chain_short.toml"),
            "--repeat",
            "2",
            "--db",
            db,
            "--data-path",
            str(data),
            "--format",
            "json",
        )
        assert recorded.returncode == 0, recorded.stderr
        # The data path is the catalog's: later commands need only the name.
        runs = run_cli("runs", "--db", db, "--format", "json")
        assert runs.returncode == 0, runs.stderr
        assert [r["status"] for r in json.loads(runs.stdout)] == ["completed"] * 2
        store = resolve_db_path(db)
        with open_for_writing(store) as conn:
            steps = conn.execute("SELECT count(*) FROM steps").fetchone()
            # Rows move from the catalog to Parquet (null token totals of running runs
            # included: no NOT NULL was ever dropped on a lake).
            conn.execute("CALL ducklake_flush_inlined_data('store')")
            assert conn.execute("SELECT count(*) FROM steps").fetchone() == steps
            # A step's usage and request id are stored once, in its response, on a lake too
            # (the insert decides, no later update: migration 21); the views give them back.
            assert conn.execute(
                "SELECT count(usage_raw), count(request_id) FROM step_rows"
            ).fetchone() == (0, 0)
            assert steps is not None
            assert conn.execute(
                "SELECT count(usage_raw), count(request_id) FROM steps"
            ).fetchone() == (steps[0], steps[0])
        assert any(data.rglob("*.parquet")), db


def _failed(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 4, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1, line
    for word in words:
        assert word in line, line
    return line


def test_bad_data_paths_are_one_line_errors(tmp_path: Path) -> None:
    db = f"ducklake:sqlite:{tmp_path / 'c.sqlite'}"
    missing = tmp_path / "no" / "such" / "dir"
    _failed(run_cli("runs", "--db", db), "no trace store here")
    _failed(
        run_cli("record", "-t", "research", "--db", db, "--data-path", str(missing)),
        "does not exist",
    )
    a_file = tmp_path / "file"
    a_file.write_text("x")
    _failed(
        run_cli("record", "-t", "research", "--db", db, "--data-path", str(a_file)),
        "not a directory",
    )
    assert not (tmp_path / "c.sqlite").exists()  # nothing half-made left behind
    _failed(
        run_cli("runs", "--db", f"ducklake:sqlite:{tmp_path / 'nodir' / 'c.sqlite'}"),
        "no trace store here",
    )


def test_a_missing_extension_is_a_one_line_error(tmp_path: Path) -> None:
    # A `duckdb_extension_ducklake` that shadows the installed one: first without any
    # extension file (the extra not installed), then built for another DuckDB.
    shadow = tmp_path / "shadow"
    (shadow / "duckdb_extension_ducklake").mkdir(parents=True)
    (shadow / "duckdb_extension_ducklake" / "__init__.py").write_text("")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow), str(REPO)])}
    db = f"ducklake:sqlite:{tmp_path / 'c.sqlite'}"
    line = _failed(run_cli("runs", "--db", db, env=env), "ducklake")
    assert "pip install 'agent-traces[lake]'" in line
    built = shadow / "duckdb_extension_ducklake" / "extensions" / "v0.9.9"
    built.mkdir(parents=True)
    (built / "ducklake.duckdb_extension").write_bytes(b"")
    line = _failed(run_cli("runs", "--db", db, env=env), "v0.9.9", duckdb.__version__)
    assert "pip install 'agent-traces[lake]'" in line


def test_a_lake_database_path_in_the_environment(tmp_path: Path) -> None:
    env = {
        "TRACES_DB": f"ducklake:sqlite:{tmp_path / 'c.sqlite'}",
        "TRACES_DATA_PATH": str(tmp_path / "data"),
    }
    done = run_cli("schema", "runs", env=env)
    assert done.returncode == 0, done.stderr
    assert "recorder_host" in done.stdout
    assert not (tmp_path / "c.sqlite").exists()  # describing a store creates none
    with pytest.raises(DatabaseError, match="no trace store here"):
        open_for_reading(resolve_db_path(env["TRACES_DB"]))


def test_the_writer_process_finds_the_lake_by_name(lake: LakeStore) -> None:
    # What `Recorder` starts: `python -m traces.store.writer NAME …` with the data path in
    # its environment; a lake the writer created is one the name alone opens later.
    file_store.test_runs_of_dead_recorders_become_interrupted(lake)  # type: ignore[arg-type]
    assert lake.data_path is not None
    assert Path(lake.data_path).is_dir()
    again = resolve_db_path(str(lake))
    assert isinstance(again, LakeStore) and again.data_path is None
    with open_for_reading(again) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)


def _rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table a merge copies, of the store file at `db`, in a stable order,
    without the store's own numbering (`run_keys.without_keys`), which must agree with itself."""
    from traces.store.run_tables import OWN, store_tables

    with duckdb.connect(str(db), read_only=True) as conn:
        assert disagreements(conn) == []
        return {
            table: sorted(conn.execute(without_keys(conn, table)).fetchall(), key=repr)
            for table in store_tables(conn, db.stem)
            if table not in OWN
        }


def test_merge_moves_runs_into_a_lake_and_back_out(sim: SimServer, tmp_path: Path) -> None:
    laptop = tmp_path / "laptop.duckdb"
    record(laptop, sim.base_url, "chain_short", repeat=2)
    import_files(laptop, [IMPORTS / "exchanges.jsonl"], ImportOptions(provider="acme"))
    shared = f"ducklake:sqlite:{tmp_path / 'shared.sqlite'}"

    def merge(*args: str) -> dict[str, Any]:
        done = run_cli("merge", *args, "--format", "json")
        assert done.returncode == 0, done.stderr
        [row] = json.loads(done.stdout)
        return row  # type: ignore[no-any-return]

    into_lake = merge(str(laptop), "--into", shared, "--data-path", str(tmp_path / "data"))
    assert into_lake["copied"] == into_lake["runs"] > 2
    assert merge(str(laptop), "--into", shared)["copied"] == 0  # merging again: nothing
    with open_for_reading(resolve_db_path(shared)) as conn:
        # Every key as exact as its hash.
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE key = md5_number_lower(hash)) FROM messages"
        ).fetchone()
        assert row is not None and row[0] == row[1] > 0
        rebuilt = conn.execute(
            "SELECT count(*) FROM request_messages((SELECT min(run_id) FROM steps), 1)"
        ).fetchone()
        assert rebuilt is not None and rebuilt[0] > 0
    with open_for_writing(resolve_db_path(shared)) as conn:
        # What two writers storing one message at once would leave: a message twice.
        conn.execute("INSERT INTO messages SELECT * FROM messages")
    back = tmp_path / "back.duckdb"
    out_of_lake = merge(shared, "--into", str(back))
    assert out_of_lake["copied"] == into_lake["copied"]
    assert _rows(back) == _rows(laptop)


def test_a_run_cut_short_resumes_on_a_lake(sim: SimServer, tmp_path: Path) -> None:
    laptop = tmp_path / "laptop.duckdb"
    [whole] = record(laptop, sim.base_url, "chain_short")
    cut(laptop, whole.id, steps=2)  # as a kill -9 after two committed steps leaves it
    shared = f"ducklake:sqlite:{tmp_path / 'shared.sqlite'}"
    moved = run_cli("merge", str(laptop), "--into", shared, "--data-path", str(tmp_path / "d"))
    assert moved.returncode == 0, moved.stderr
    resumed = run_cli("record", "--resume", "--db", shared, "--format", "json")
    assert resumed.returncode == 0, resumed.stderr
    [row] = json.loads(resumed.stdout)
    assert (row["id"], row["status"], row["steps"]) == (whole.id, "completed", whole.outcome.steps)
    with open_for_reading(resolve_db_path(shared)) as conn:
        assert conn.execute(
            "SELECT resumptions, steps FROM runs WHERE id = ?", [whole.id]
        ).fetchone() == (1, whole.outcome.steps)


def test_findings_so_far_on_a_lake(sim: SimServer, lake: LakeStore) -> None:
    # As on a file (test_findings_so_far): a running run's findings stored as partial, a
    # check of it that read it running storing nothing once its end was checked (on a lake
    # the chunk's store is a transaction of its own, begun after the end's: it sees the run
    # ended), and the end's check replacing them.
    [summary] = record(lake, sim.base_url, "chain_short")  # type: ignore[arg-type]
    run = summary.id
    with open_for_writing(lake) as conn:
        so_far.make_running(conn, run)
        analyze_runs(conn, [run], only_running=True)
        assert conn.execute("SELECT through_step FROM findings_so_far").fetchall() == [
            (summary.outcome.steps - 1,)
        ]
        with open_for_writing(lake) as other:
            raced = so_far._EndsMeanwhile(other, run)
            assert analyze_runs(conn, [run], only_running=True, timings=raced) == {}
        assert raced.final is not None
        assert conn.execute("SELECT count(*) FROM findings_so_far").fetchone() == (0,)
        stored = conn.execute("SELECT count(*) FROM findings WHERE run_id = ?", [run])
        assert stored.fetchone() == (raced.final,)

"""Reads of one run scan that run's row groups, not the table (issue 17 item 2, migrations 12
and 13).

A store of 5,000 runs of 100 steps (half a million rows of `steps`, of `step_message_keys`
and of `messages`: five of DuckDB's row groups of 122,880 rows each), stored run after run
as every writer stores them. Each statement the per-run reads send (`show`'s `run_detail`, a
step's page, the checks' loader, `request_messages`) is run under `EXPLAIN ANALYZE`, and the
rows each table scan read are counted: at most the two row groups a run's rows can straddle,
where a filter on `run_id` alone reads every row of the table.

The rows are written by SQL here (the writers' own keys are checked in test_store_rows,
test_merge and test_import, and below for the migration): half a million rows through the
recorder would take minutes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analyzer.checks.loader import load_run, load_runs
from analyzer.queries import neighbour_steps, run_detail, step_exchange
from traces.store.database import open_for_writing
from traces.store.migrations import MIGRATIONS, migrate
from traces.store.run_tables import of_run

from conftest import migrate_to
from run_keys import disagreements

RUNS = 5_000
STEPS = 100
ROW_GROUP = 122_880
"""DuckDB's rows per row group."""
BOUND = 2 * ROW_GROUP
"""The most rows a scan of one run's rows may read: the row groups its rows straddle."""
PREFIX = "20260101-120000-"
"""Run ids start with their date and time, as `traces.model.new_run_id`'s do: more than the
8 bytes of a string a zone map keeps."""
RUN = f"{PREFIX}{RUNS // 2:08d}"
"""A run in the middle of the store."""


def _fill(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(
        f"""
        INSERT INTO runs (id, task, task_path, task_sha256, provider, model, base_url, settings,
                          seed, status, termination, started_at, ended_at, steps,
                          recorder_pid, recorder_host, key)
        SELECT printf('%s%08d', ?, i), 'task', 'task.toml', 'f', 'p', 'm', 'http://h', '{{}}',
               0, 'completed', 'completed', TIMESTAMP '2026-01-01' + to_seconds(i),
               TIMESTAMP '2026-01-01' + to_seconds(i + 1), {STEPS}, 1, 'host', i + 1
        FROM range({RUNS}) r(i) ORDER BY i
        """,
        [PREFIX],
    )
    conn.execute(
        """
        INSERT INTO step_rows (run_id, idx, started_at, latency_ms, streamed, request_params,
                           request_message_count, request_prefix, finish_reason, content,
                           reasoning_source, reasoning_tokens_source, run_key)
        SELECT r.id, s.i, r.started_at, 1.0, false, '{"model": "m"}', s.i + 1, s.i, 'stop',
               'answer ' || s.i, 'none', 'none', r.key
        FROM runs r, range(100) s(i) ORDER BY r.key, s.i
        """
    )
    # A message per step, numbered in the order stored (migration 13), as a recorder stores
    # them: half a million rows of `messages` too, whose keys (random) no zone map orders.
    conn.execute(
        """
        INSERT INTO messages (hash, role, body, key, seq)
        SELECT h, 'user', '{"role": "user", "content": "hi"}', md5_number(h),
               row_number() OVER (ORDER BY r.key, s.i)
        FROM runs r, range(100) s(i), LATERAL (SELECT r.id || '-' || s.i AS h)
        ORDER BY r.key, s.i
        """
    )
    conn.execute(
        """
        INSERT INTO step_message_keys (run_id, step_idx, position, key, run_key, seq)
        SELECT r.id, s.i, s.i, md5_number(r.id || '-' || s.i), r.key,
               (r.key - 1) * 100 + s.i + 1
        FROM runs r, range(100) s(i) ORDER BY r.key, s.i
        """
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    db = tmp_path_factory.mktemp("run-keys") / "store.duckdb"
    conn = open_for_writing(db)
    _fill(conn)
    conn.execute("CHECKPOINT")  # row groups and their zone maps as a store file has them
    conn.close()
    reading = duckdb.connect(str(db), read_only=True)
    yield reading
    reading.close()


def _scans(conn: duckdb.DuckDBPyConnection, sql: str, params: Any) -> list[tuple[str, int]]:
    """(table, rows read) of each table scan of the statement, by `EXPLAIN ANALYZE`."""
    text = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params).fetchall()[0][1]
    found: list[tuple[str, int]] = []
    nodes = [json.loads(text)]
    while nodes:
        node = nodes.pop()
        if node.get("operator_type") == "TABLE_SCAN":
            table = str(node.get("extra_info", {}).get("Table", "?")).split(".")[-1]
            found.append((table, int(node["operator_rows_scanned"])))
        nodes.extend(node.get("children", []))
    return found


class Profiled:
    """A connection that first runs each statement under `EXPLAIN ANALYZE`, keeping what each
    table scan read, then runs it as asked."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        self.scans: list[tuple[str, str, int]] = []

    def execute(self, sql: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        for table, rows in _scans(self.conn, sql, params):
            self.scans.append((" ".join(sql.split())[:80], table, rows))
        return self.conn.execute(sql, params)

    def too_many(self) -> list[tuple[str, str, int]]:
        """The scans that read more than the run's row groups."""
        assert self.scans, "no statement was profiled"
        return [scan for scan in self.scans if scan[2] > BOUND]


def _profiled(conn: duckdb.DuckDBPyConnection) -> Any:
    return Profiled(conn)  # stands for the connection: the functions only call `execute`


def test_the_store_spans_row_groups_and_run_id_alone_reads_them_all(
    store: duckdb.DuckDBPyConnection,
) -> None:
    # The case the run key answers: without it, a run's 100 steps cost the whole table.
    scans = _scans(store, "SELECT * FROM step_rows WHERE run_id = ?", [RUN])
    assert scans == [("step_rows", RUNS * STEPS)]
    assert RUNS * STEPS > 4 * ROW_GROUP
    assert disagreements(store) == []


def test_a_filter_on_the_run_reads_its_row_groups_only(store: duckdb.DuckDBPyConnection) -> None:
    sql = f"SELECT * FROM step_rows WHERE {of_run()}"
    assert len(store.execute(sql, [RUN, RUN]).fetchall()) == STEPS
    [(_, runs), (_, steps)] = sorted(_scans(store, sql, [RUN, RUN]))
    assert runs <= 1  # the key, by the index on `runs.id`
    assert steps <= BOUND


def test_show_reads_one_run(store: duckdb.DuckDBPyConnection) -> None:
    conn = _profiled(store)
    detail = run_detail(conn, RUN)
    assert len(detail["steps"]) == STEPS
    assert conn.too_many() == []


def test_a_step_page_reads_one_run(store: duckdb.DuckDBPyConnection) -> None:
    conn = _profiled(store)
    assert len(run_detail(conn, RUN, only_step=50)["steps"]) == 1
    exchange = step_exchange(conn, RUN, 50)
    assert exchange is not None and len(exchange["request"]["messages"]) == 51
    assert neighbour_steps(conn, RUN, 50) == (49, 51)
    assert conn.too_many() == []


def test_request_messages_reads_one_run(store: duckdb.DuckDBPyConnection) -> None:
    conn = _profiled(store)
    rows = conn.execute("SELECT * FROM request_messages(?, ?)", [RUN, STEPS - 1]).fetchall()
    assert [row[0] for row in rows] == list(range(STEPS))
    assert conn.too_many() == []


def test_the_checks_loader_reads_its_runs_only(store: duckdb.DuckDBPyConnection) -> None:
    conn = _profiled(store)
    run = load_run(conn, RUN)
    assert len(run.steps) == STEPS
    neighbours = [f"{PREFIX}{i:08d}" for i in range(RUNS // 2, RUNS // 2 + 10)]
    assert [r.id for r in load_runs(conn, neighbours)] == neighbours
    assert conn.too_many() == []


def test_migration_12_numbers_the_runs_of_an_older_store_in_their_order(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "old.duckdb"))
    migrate_to(conn, 11)
    conn.execute(
        """
        INSERT INTO runs (id, task, task_path, task_sha256, provider, model, base_url, settings,
                          seed, status, started_at, recorder_pid, recorder_host)
        SELECT id, 't', 't', 'f', 'p', 'm', 'u', '{}', 0, 'completed', TIMESTAMP '2026-01-01',
               1, 'h'
        FROM (VALUES ('b-second-stored'), ('a-first-id')) v(id)
        """
    )
    conn.execute(
        """
        INSERT INTO steps (run_id, idx, started_at, latency_ms, streamed, request_params,
                           request_message_count, request_prefix, finish_reason,
                           reasoning_source, reasoning_tokens_source)
        SELECT id, 0, TIMESTAMP '2026-01-01', 1, false, '{}', 1, 0, 'stop', 'none', 'none'
        FROM runs
        """
    )
    assert migrate(conn) == MIGRATIONS[-1][0]
    assert disagreements(conn) == []
    # By the order they were stored in, not by id.
    assert conn.execute("SELECT id, key FROM runs ORDER BY key").fetchall() == [
        ("b-second-stored", 1),
        ("a-first-id", 2),
    ]
    conn.close()


def test_migration_13_numbers_the_messages_of_an_older_store_in_their_order(
    tmp_path: Path,
) -> None:
    conn = duckdb.connect(str(tmp_path / "old.duckdb"))
    migrate_to(conn, 12)
    conn.execute(
        """
        INSERT INTO runs (id, task, task_path, task_sha256, provider, model, base_url, settings,
                          seed, status, started_at, recorder_pid, recorder_host, key)
        VALUES ('r', 't', 't', 'f', 'p', 'm', 'u', '{}', 0, 'completed',
                TIMESTAMP '2026-01-01', 1, 'h', 1)
        """
    )
    conn.execute(
        """
        INSERT INTO steps (run_id, idx, started_at, latency_ms, streamed, request_params,
                           request_message_count, request_prefix, finish_reason,
                           reasoning_source, reasoning_tokens_source, run_key)
        SELECT 'r', i, TIMESTAMP '2026-01-01', 1, false, '{}', i + 1, i, 'stop', 'none',
               'none', 1
        FROM range(3) r(i)
        """
    )
    # Stored in an order their hashes do not sort in; step 2 repeats step 0's message.
    conn.execute(
        """
        INSERT INTO messages (hash, role, body, key)
        SELECT h, 'user', '{}', md5_number(h) FROM (VALUES ('z'), ('a'), ('m')) v(h)
        """
    )
    conn.execute(
        """
        INSERT INTO step_message_keys (run_id, step_idx, position, key, run_key)
        SELECT 'r', i, i, md5_number(h), 1 FROM (VALUES (0, 'z'), (1, 'a'), (2, 'z')) v(i, h)
        """
    )
    assert migrate(conn) == MIGRATIONS[-1][0]
    assert disagreements(conn) == []
    assert conn.execute("SELECT hash, seq FROM messages ORDER BY seq").fetchall() == [
        ("z", 1),
        ("a", 2),
        ("m", 3),
    ]
    assert conn.execute(
        "SELECT step_idx, seq FROM step_message_keys ORDER BY step_idx"
    ).fetchall() == [(0, 1), (1, 2), (2, 1)]
    assert conn.execute("SELECT position, hash FROM request_messages('r', 2)").fetchall() == [
        (0, "z"),
        (1, "a"),
        (2, "z"),
    ]
    conn.close()

"""How the store keeps its bytes (migrations 9, 10, 16 and 20): zstd columns, a message key
(128 bits, 64 since migration 20), `step_messages` stored by that key, a tool's output stored
once in the tool message sent back, with every value, every rebuilt request and every raw body
and SSE line exactly as before.

The old store is real: runs recorded against the simulator over HTTP (streamed and not, with
retried faults) and an import of the exchanges fixture are copied, row by row in their order,
into a file built by the migrations a release at schema 7 ran (the schema issue 11 shipped),
which is then opened as any newer `traces` opens it (and rewritten without the blocks its
old tables held: `traces.store.compaction`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.recording import record
from traces.importing import ImportOptions, import_files
from traces.retry import RetryPolicy
from traces.sim.config import SimConfig
from traces.sim.server import SimServer
from traces.store.database import open_for_reading, open_for_writing
from traces.store.inserts import insert_rows
from traces.store.migrations import MIGRATIONS, latest_version
from traces.store.recorder import Recorder
from traces.store.rows import to_json
from traces.store.tables import (
    COLUMNS,
    MessageRow,
    StepRow,
    ToolCallRow,
    ToolResultRow,
    stored_request_id,
    stored_usage,
)

from conftest import migrate_to

REPO = Path(__file__).resolve().parent.parent
EXCHANGES = REPO / "tests" / "fixtures" / "import" / "exchanges.jsonl"

ZSTD_COLUMNS = {
    "messages": {"body"},
    "step_rows": {"response_headers", "response_body", "stream_events", "reasoning"},
    "tool_result_rows": {"output"},
}
"""The columns migration 9 stores with zstd (a tool's output in `tool_result_rows` since
migration 16, a step's columns in `step_rows` since 17; since 21 a step's usage, mostly
null there, is stored as DuckDB chooses)."""
KEYS_NARROWED = next(n for n, name, _ in MIGRATIONS if name.endswith("64-bit message keys"))
"""The migration that made message keys 64-bit (20)."""
_RETRY = RetryPolicy(base_s=0.0, max_retries=8, max_wait_s=0.0)


def _tables(conn: duckdb.DuckDBPyConnection) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND table_name <> 'schema_migrations' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND table_name = ? ORDER BY column_index",
        [table],
    ).fetchall()
    return [r[0] for r in rows]


def _old_store(path: Path, source: Path, version: int) -> None:
    """A store at schema `version` holding every row of `source` (the columns that schema
    has), in `source`'s row order, as a release at that version wrote it."""
    old = duckdb.connect(str(path))
    migrate_to(old, version)
    old.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
    wide = version < KEYS_NARROWED  # a message's key: its hash's md5_number before it
    for table in _tables(old):
        columns = _columns(old, table)
        names = ", ".join(columns)
        # Since migration 14 two sessions may each store a message (`traces.store.numbers`);
        # a release before it stored each hash once: its first copy.
        rows = f"SELECT {names} FROM src.{table} {_order(old, table)}"
        if table == "step_rows" and "usage_from" not in _columns(old, table):
            # Before migration 21 every usage and request id in full: as the view gives them.
            values = ", ".join(_GIVEN_BACK.get(c, f"t.{c}") for c in _columns(old, table))
            rows = f"SELECT {values} FROM src.step_rows t ORDER BY t.rowid"
        if table == "messages":
            picked = ", ".join(
                "md5_number(hash) AS key" if c == "key" and wide else c for c in columns
            )
            rows = (
                f"SELECT {picked} FROM (SELECT *, rowid AS stored_order, row_number() OVER "
                "(PARTITION BY hash ORDER BY rowid) AS copy FROM src.messages) "
                "WHERE copy = 1 ORDER BY stored_order"
            )
        elif table == "step_message_keys" and wide:
            # The 128-bit key of the message the row names (by its number and 64-bit key).
            picked = ", ".join(
                "(SELECT md5_number(any_value(m.hash)) FROM src.messages m "
                "WHERE m.seq = s.seq AND m.key = s.key) AS key"
                if c == "key"
                else f"s.{c}"
                for c in columns
            )
            rows = f"SELECT {picked} FROM src.step_message_keys s ORDER BY s.rowid"
        old.execute(f"INSERT INTO {table} ({names}) {rows}")
    old.execute("DETACH src")
    old.close()


_GIVEN_BACK = {"usage_raw": stored_usage("t"), "request_id": stored_request_id("t")}
"""The columns of `step_rows` that migration 21 stores once, as the view `steps` gives them."""


def _old_snapshot(
    path: Path, source: Path, version: int
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The store `_old_store` makes, with each table's columns and `_snapshot` of it."""
    _old_store(path, source, version)
    reader = duckdb.connect(str(path), read_only=True)
    kept = {table: _columns(reader, table) for table in _tables(reader)}
    before = _snapshot(reader, kept)
    reader.close()
    return kept, before


@contextlib.contextmanager
def _migrated_from(
    tmp_path: Path, sim: SimServer, version: int
) -> Iterator[tuple[duckdb.DuckDBPyConnection, dict[str, Any]]]:
    """A store of recorded and imported runs written at schema `version`, migrated by this
    code and open for reading (every value of every table and view checked unchanged, but
    the message keys migration 20 made 64-bit: `_unkeyed`), with the `_snapshot` taken
    before."""
    source = tmp_path / "source.duckdb"
    record(source, sim.base_url, "chain_short", stream=False, seed=2)
    _imported(source)
    old = tmp_path / "old.duckdb"
    kept, before = _old_snapshot(old, source, version)
    open_for_writing(old).close()
    conn = open_for_reading(old)
    try:
        assert _snapshot(conn, _unkeyed(kept)) == _snapshot_of(before, kept, _unkeyed(kept))
        yield conn, before
    finally:
        conn.close()


_VIEW_KEYS = {
    "step_messages": "run_id, step_idx, position",
    "tool_results": "run_id, step_idx, call_idx",
    "steps": "run_id, idx",
    "tool_calls": "run_id, step_idx, call_idx",
}
"""The key of each table that is now a view (`step_messages` since migration 10,
`tool_results` since 16, `steps` since 17, `tool_calls` since 21)."""


def _order(conn: duckdb.DuckDBPyConnection, table: str, catalog: str = "src") -> str:
    """Row order: a table's own; a view's by its key."""
    base = conn.execute(
        "SELECT 1 FROM duckdb_tables() WHERE database_name = ? AND table_name = ?",
        [catalog, table],
    ).fetchone()
    return "ORDER BY rowid" if base else f"ORDER BY {_VIEW_KEYS[table]}"


def _snapshot(conn: duckdb.DuckDBPyConnection, tables: dict[str, list[str]]) -> dict[str, Any]:
    """Every row of each table (the given columns, in row order; a table now a view in
    order of its key) and every step's request as `request_messages` rebuilds it."""
    catalog = conn.execute("SELECT current_database()").fetchone()
    assert catalog is not None
    # Since migration 21 `step_rows` keeps a usage and a request id once: as the view gives.
    once = "usage_from" in _columns(conn, "step_rows")
    out: dict[str, Any] = {
        table: conn.execute(
            "SELECT "
            + ", ".join(
                _GIVEN_BACK.get(c, f"t.{c}") if table == "step_rows" and once else c for c in cols
            )
            + f" FROM {table} t "
            + (
                f"ORDER BY {_VIEW_KEYS[table]}"
                if table in _VIEW_KEYS
                else _order(conn, table, catalog[0])
            )
        ).fetchall()
        for table, cols in tables.items()
    }
    steps = conn.execute("SELECT run_id, idx FROM steps ORDER BY run_id, idx").fetchall()
    out["requests"] = [
        conn.execute("SELECT * FROM request_messages(?, ?)", [run_id, idx]).fetchall()
        for run_id, idx in steps
    ]
    return out


@pytest.mark.slow
def test_a_store_at_schema_7_is_converted_in_place_losing_nothing(
    tmp_path: Path, sim: SimServer
) -> None:
    source = tmp_path / "source.duckdb"
    record(source, sim.base_url, "chain_short", stream=True, repeat=2, seed=1)
    record(source, sim.base_url, "files", stream=False, seed=3)
    # Failed attempts, retried: error bodies, retry errors, streams cut short.
    faults = {"rate_limit_429": 0.3, "stream_truncated": 0.2, "invalid_json_arguments": 0.3}
    with SimServer(SimConfig(seed=5, faults=faults)) as faulted:
        record(source, faulted.base_url, "chain_short", stream=True, seed=7, retry=_RETRY)
    import_files(source, [EXCHANGES], ImportOptions(provider="fixture"))

    old = tmp_path / "old.duckdb"
    kept, before = _old_snapshot(old, source, 7)
    # What the old store holds: streams (with arrival times, and imported ones without),
    # raw bodies, retried failures, rebuilt requests.
    column = {name: kept["steps"].index(name) for name in kept["steps"]}
    steps = before["steps"]
    assert any(
        row[column["stream_events"]] and "[null," in row[column["stream_events"]] for row in steps
    )
    assert any(
        row[column["stream_events"]] and "[null," not in row[column["stream_events"]]
        for row in steps
    )
    assert any(row[column["response_body"]] is not None for row in steps)
    assert any(row[column["retry_errors"]] is not None for row in steps)
    assert all(before["requests"])

    open_for_writing(old).close()  # what the next `traces` command to write does
    # The rebuilt tables' old blocks are not left in the file: it was rewritten without them.
    assert [p.name for p in tmp_path.iterdir() if "compact" in p.name] == []
    conn = open_for_reading(old)
    try:
        assert conn.execute(
            "SELECT free_blocks FROM pragma_database_size() WHERE database_name = 'old'"
        ).fetchone() == (0,)
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (
            latest_version(),
        )
        # Every value of every column the old store had, in the same row order, and every
        # request rebuilt message for message.
        assert _snapshot(conn, kept) == before
        # The key is (the high half of) the hash's md5, for every message.
        assert conn.execute(
            "SELECT count(*) FROM messages WHERE key IS DISTINCT FROM md5_number_lower(hash)"
        ).fetchone() == (0,)
        # Migration 10: step_messages rows stored by that key (every one of them, each
        # naming a stored message).
        assert (
            conn.execute(
                "SELECT count(*), count(m.key) FROM step_message_keys s "
                "LEFT JOIN (SELECT DISTINCT key FROM messages) m USING (key)"
            ).fetchone()
            == (len(before["step_messages"]),) * 2
        )
        # The raw columns are stored with zstd (and nothing else changed its compression).
        for table, columns in ZSTD_COLUMNS.items():
            methods = dict(
                conn.execute(
                    "SELECT column_name, list(DISTINCT compression) FROM pragma_storage_info(?) "
                    "WHERE segment_type NOT IN ('VALIDITY') GROUP BY ALL",
                    [table],
                ).fetchall()
            )
            for column in columns:
                assert methods[column] == ["ZSTD"], (table, column, methods[column])
    finally:
        conn.close()


def test_a_message_is_still_stored_once_by_its_hash(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    conn = open_for_writing(db)
    try:
        first = MessageRow(hash="h-1", role="user", body='{"role": "user", "content": "hi"}')
        other = MessageRow(hash="h-2", role="user", body='{"role": "user", "content": "yo"}')
        insert_rows(conn, "messages", [first, other])
        # The same hash again, alone and beside a new one: skipped, the first text kept.
        again = first._replace(body='{"role": "user", "content": "changed"}')
        insert_rows(conn, "messages", [again])
        insert_rows(conn, "messages", [again, MessageRow("h-3", "tool", "{}")])
        rows = conn.execute("SELECT hash, body FROM messages ORDER BY hash").fetchall()
    finally:
        conn.close()
    assert rows == [
        ("h-1", '{"role": "user", "content": "hi"}'),
        ("h-2", '{"role": "user", "content": "yo"}'),
        ("h-3", "{}"),
    ]


def _imported(path: Path) -> None:
    import_files(path, [EXCHANGES], ImportOptions(provider="fixture"))


def _stored_once(conn: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    """Each result stored without its output: its view's output and the body of the message
    its position names (decoded in Python, not by the view's extraction)."""
    return conn.execute(
        """SELECT v.output, m.body FROM tool_result_rows t
        JOIN tool_results v USING (run_id, step_idx, call_idx)
        JOIN step_message_keys s ON s.run_id = t.run_id AND s.step_idx = t.step_idx + 1
            AND s.position = t.output_position
        JOIN messages m ON m.seq = s.seq AND m.key = s.key
        WHERE t.output IS NULL"""
    ).fetchall()


def test_an_imported_tool_output_is_stored_once_in_the_message_sent_back(
    tmp_path: Path,
) -> None:
    db = tmp_path / "t.duckdb"
    _imported(db)
    conn = open_for_writing(db)
    try:
        counts = conn.execute(
            "SELECT count(*), count(output), count(output_position) FROM tool_result_rows"
        ).fetchone()
        assert counts is not None and counts[0] > 0 and counts[2] == counts[0] - counts[1] > 0
        # The view's text is the tool message's content, byte for byte.
        once = _stored_once(conn)
        assert len(once) == counts[2]
        for output, body in once:
            assert output == json.loads(body)["content"]
        # One byte off, or no such message: kept in full; the same text: stored once.
        row = conn.execute(
            "SELECT * EXCLUDE (output_position, run_key) REPLACE (v.output AS output) "
            "FROM tool_result_rows JOIN tool_results v USING (run_id, step_idx, call_idx) "
            "WHERE output_position IS NOT NULL LIMIT 1"
        ).fetchone()
        assert row is not None
        result = ToolResultRow(*row[:10], structured=row[10])
        copies = [
            result._replace(call_idx=100, output=result.output + " "),
            result._replace(call_idx=101, output=result.output[:-1]),
            result._replace(call_idx=102, step_idx=result.step_idx + 1),
            result._replace(call_idx=103),
        ]
        insert_rows(conn, "tool_results", copies)
        stored = conn.execute(
            "SELECT t.call_idx, t.output, t.output_position, v.output FROM tool_result_rows t "
            "JOIN tool_results v USING (run_id, step_idx, call_idx) "
            "WHERE t.call_idx >= 100 ORDER BY t.call_idx"
        ).fetchall()
    finally:
        conn.close()
    full = [(c.call_idx, c.output, None, c.output) for c in copies[:3]]
    assert stored[:3] == full
    assert stored[3][1] is None and stored[3][2] is not None and stored[3][3] == result.output


@pytest.mark.slow
def test_migration_16_keeps_every_tool_result(tmp_path: Path, sim: SimServer) -> None:
    """A store at schema 15 (every output in `tool_results`) is converted: the outputs the
    next request's tool messages hold are stored once, every value of every table stays."""
    with _migrated_from(tmp_path, sim, 15) as (conn, before):
        assert before["tool_results"]
        once = _stored_once(conn)
        # Recorded results too: their next request is stored by now.
        assert len(once) == len(before["tool_results"])
        for output, body in once:
            assert output == json.loads(body)["content"]


def _reasoning_once(conn: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    """Each step stored without its reasoning or replayed message's hash: the view's values
    and the body and hash of the message the position names (decoded in Python, not by the
    view's extraction), with the step's reasoning source and flags."""
    return conn.execute(
        """SELECT v.reasoning, v.replay_message_hash, m.body, m.hash, t.reasoning_source,
                  t.replayed, t.reasoning_replayed
        FROM step_rows t JOIN steps v USING (run_id, idx)
        JOIN step_message_keys s ON s.run_id = t.run_id AND s.step_idx = t.idx + 1
            AND s.position = t.request_message_count
        JOIN messages m ON m.seq = s.seq AND m.key = s.key
        WHERE t.replayed OR t.reasoning_replayed"""
    ).fetchall()


def _check_reasoning_once(conn: duckdb.DuckDBPyConnection) -> int:
    """Every step stored without its reasoning gives it back from the replayed message, byte
    for byte, and without its hash, that message's; how many steps keep no reasoning."""
    nulls = conn.execute(
        "SELECT count(*) FILTER (WHERE reasoning_replayed), "
        "count(*) FILTER (WHERE reasoning_replayed AND reasoning IS NOT NULL), "
        "count(*) FILTER (WHERE replayed AND replay_message_hash IS NOT NULL) FROM step_rows"
    ).fetchone()
    assert nulls is not None and nulls[1:] == (0, 0)
    for (
        reasoning,
        replayed_hash,
        body,
        digest,
        source,
        replayed,
        reasoning_replayed,
    ) in _reasoning_once(conn):
        if reasoning_replayed:
            assert reasoning == json.loads(body)[source]
        if replayed:
            assert replayed_hash == digest
    return int(nulls[0])


def test_an_imported_reasoning_is_stored_once_in_the_message_sent_back(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    _imported(db)
    conn = open_for_writing(db)
    try:
        assert _check_reasoning_once(conn) > 0
    finally:
        conn.close()
    # The same log with the first reasoning sent back one byte off: that step keeps its
    # reasoning in full (the message is still the one replayed), the view gives it back.
    lines = [json.loads(line) for line in EXCHANGES.read_text().splitlines() if line.strip()]
    first, second = [x for x in lines if x["conversation"] == "c1"][:2]
    sent = second["request"]["messages"][len(first["request"]["messages"])]
    reasoning = sent["reasoning_content"]
    sent["reasoning_content"] = reasoning + " "
    off = tmp_path / "off.jsonl"
    off.write_text("".join(json.dumps(x) + "\n" for x in (first, second)))
    db = tmp_path / "off.duckdb"
    import_files(db, [off], ImportOptions(provider="fixture"))
    conn = open_for_reading(db)
    try:
        stored = conn.execute(
            "SELECT t.reasoning, t.replay_message_hash, t.replayed, t.reasoning_replayed, "
            "v.reasoning, v.replay_message_hash FROM step_rows t "
            "JOIN steps v USING (run_id, idx) WHERE t.idx = 0"
        ).fetchall()
        assert _check_reasoning_once(conn) == 0
    finally:
        conn.close()
    assert len(stored) == 1
    assert stored[0][:4] == (reasoning, None, True, False)
    assert stored[0][4] == reasoning and stored[0][5] is not None


@pytest.mark.slow
def test_migration_17_keeps_every_step(tmp_path: Path, sim: SimServer) -> None:
    """A store at schema 16 (every reasoning and replayed hash in `steps`) is converted: the
    ones the next request's assistant message holds are stored once, every value stays."""
    with _migrated_from(tmp_path, sim, 16) as (conn, before):
        assert before["steps"]
        # Recorded steps too: their next request is stored by now.
        assert _check_reasoning_once(conn) > 0
        recorded = conn.execute(
            "SELECT count(*) FROM step_rows t JOIN runs r ON r.id = t.run_id "
            "WHERE r.origin = 'recorded' AND t.replayed"
        ).fetchone()
        assert recorded is not None and recorded[0] > 0


_STEP_VALUES = (
    "SELECT s.idx, s.reasoning, s.reasoning_source, s.replay_message_hash, s.request_hash, "
    "s.content FROM steps s JOIN runs r ON r.id = s.run_id ORDER BY r.seed, s.idx"
)
_OUTPUT_VALUES = (
    "SELECT t.step_idx, t.call_idx, t.name, t.output, t.error FROM tool_results t "
    "JOIN runs r ON r.id = t.run_id ORDER BY r.seed, t.step_idx, t.call_idx"
)


def test_a_recorded_reasoning_is_stored_once_in_the_message_sent_back(
    tmp_path: Path, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recorder learns one step later what the next request sent back: the writer stores
    the step's reasoning, replayed hash and tools' outputs once, in that request's
    transaction, and the views give the values a recorder storing them in full stores."""
    db = tmp_path / "t.duckdb"
    for seed, stream in ((2, False), (3, True)):
        record(db, sim.base_url, "chain_short", stream=stream, seed=seed)
    conn = open_for_reading(db)
    try:
        assert _check_reasoning_once(conn) > 0
        # Every step a next step of its run follows has its replayed hash stored once.
        kept = conn.execute(
            "SELECT count(*) FROM step_rows t JOIN step_rows n ON n.run_id = t.run_id "
            "AND n.idx = t.idx + 1 WHERE NOT t.replayed AND t.error_kind IS NULL"
        ).fetchone()
        assert kept == (0,)
        now = conn.execute(_STEP_VALUES).fetchall()
        # And every tool result whose output the next request sent back, once.
        once = _stored_once(conn)
        assert once
        for output, body in once:
            assert output == json.loads(body)["content"]
        full = conn.execute(
            "SELECT count(*) FROM tool_result_rows t JOIN step_rows n ON n.run_id = t.run_id "
            "AND n.idx = t.step_idx + 1 WHERE t.output IS NOT NULL"
        ).fetchone()
        assert full == (0,)
        outputs = conn.execute(_OUTPUT_VALUES).fetchall()
    finally:
        conn.close()
    monkeypatch.setattr(Recorder, "_replay_of_previous", lambda *_: None)
    monkeypatch.setattr(Recorder, "_outputs_sent", lambda *_: [])
    full = tmp_path / "full.duckdb"
    for seed, stream in ((2, False), (3, True)):
        record(full, sim.base_url, "chain_short", stream=stream, seed=seed)
    conn = open_for_reading(full)
    try:
        flagged = conn.execute("SELECT count(*) FROM step_rows WHERE replayed").fetchone()
        assert flagged == (0,)
        assert conn.execute(_STEP_VALUES).fetchall() == now
        assert conn.execute(_OUTPUT_VALUES).fetchall() == outputs
        assert conn.execute(
            "SELECT count(*) FROM tool_result_rows WHERE output IS NULL"
        ).fetchone() == (0,)
    finally:
        conn.close()


@pytest.mark.slow
def test_migration_18_keeps_every_step_without_the_key(tmp_path: Path, sim: SimServer) -> None:
    """A store at schema 17 loses the primary key of `step_rows` (an index no read used), in
    the same row order, every value of every table and view unchanged (`_migrated_from`)."""
    with _migrated_from(tmp_path, sim, 17) as (conn, before):
        assert before["step_rows"]
        keys = conn.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'step_rows' "
            "AND constraint_type = 'PRIMARY KEY'"
        ).fetchone()
        assert keys == (0,)
        assert _check_reasoning_once(conn) > 0


@pytest.mark.slow
def test_migration_19_numbers_the_step_messages_an_import_left_unnumbered(
    tmp_path: Path, sim: SimServer
) -> None:
    """A store at schema 18 whose step messages name no message number (what the parallel
    import left before this release) gets every request, reasoning and output back: each row
    given its message's number, every value of every table and view as before the loss."""
    source = tmp_path / "source.duckdb"
    record(source, sim.base_url, "chain_short", stream=False, seed=2)
    _imported(source)
    old = tmp_path / "old.duckdb"
    kept, before = _old_snapshot(old, source, 18)
    damaged = duckdb.connect(str(old))
    try:
        damaged.execute("UPDATE step_message_keys SET seq = NULL WHERE step_idx % 2 = 1")
        assert _snapshot(damaged, kept) != before  # the readers lost those messages
    finally:
        damaged.close()
    open_for_writing(old).close()
    conn = open_for_reading(old)
    try:
        assert _snapshot(conn, _unkeyed(kept)) == _snapshot_of(before, kept, _unkeyed(kept))
        assert conn.execute("SELECT count(*) - count(seq) FROM step_message_keys").fetchone() == (
            0,
        )
    finally:
        conn.close()


_VIEWS_20 = ("steps", "step_messages", "tool_results")
"""The views over the tables migration 20 rebuilds (and `request_messages`, below)."""


@pytest.mark.slow
def test_migration_20_keeps_every_view_with_64_bit_keys(tmp_path: Path, sim: SimServer) -> None:
    """A store at schema 19 gets 64-bit message keys (the high half of each 128-bit one):
    every row of every view and every rebuilt request unchanged (`EXCEPT ALL` both ways,
    against copies made inside the old store), every other column of every table too, in
    the same row order."""
    source = tmp_path / "source.duckdb"
    record(source, sim.base_url, "chain_short", stream=False, seed=2)
    _imported(source)
    old = tmp_path / "old.duckdb"
    kept, before = _old_snapshot(old, source, KEYS_NARROWED - 1)
    conn = duckdb.connect(str(old))
    try:
        for view in _VIEWS_20:
            conn.execute(f"CREATE TABLE before_{view} AS SELECT * FROM {view}")
        conn.execute(
            "CREATE TABLE before_requests AS SELECT s.run_id, s.idx, r.* "
            "FROM steps s, LATERAL request_messages(s.run_id, s.idx) r"
        )
        conn.execute("CREATE TABLE before_keys AS SELECT hash, key FROM messages")
    finally:
        conn.close()
    open_for_writing(old).close()
    conn = open_for_reading(old)
    try:
        now = {f"before_{view}": f"SELECT * FROM {view}" for view in _VIEWS_20}
        now["before_requests"] = (
            "SELECT s.run_id, s.idx, r.* FROM steps s, LATERAL request_messages(s.run_id, s.idx) r"
        )
        for copy, rows in now.items():
            count = conn.execute(f"SELECT count(*) FROM {copy}").fetchone()
            assert count is not None and count[0] > 0, copy
            for one, other in ((copy, f"({rows})"), (f"({rows})", copy)):
                left = conn.execute(
                    f"SELECT count(*) FROM (SELECT * FROM {one} EXCEPT ALL SELECT * FROM {other})"
                ).fetchone()
                assert left == (0,), (copy, one)
        # Every other column of every table, in the same row order; the keys are the old
        # ones' high halves, each message's md5_number_lower of its hash.
        unkeyed = _unkeyed(kept)
        assert _snapshot(conn, unkeyed) == _snapshot_of(before, kept, unkeyed)
        for table in _KEYED_20:
            kind = conn.execute(
                "SELECT data_type FROM duckdb_columns() WHERE table_name = ? "
                "AND column_name = 'key'",
                [table],
            ).fetchone()
            assert kind == ("UBIGINT",), table
        assert (
            conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE m.key = md5_number_lower(m.hash) "
                "AND m.key = b.key >> 64) FROM messages m JOIN before_keys b USING (hash)"
            ).fetchone()
            == (len(before["messages"]),) * 2
        )
        assert conn.execute(
            "SELECT count(*) FROM step_message_keys s "
            "ANTI JOIN messages m ON m.seq = s.seq AND m.key = s.key"
        ).fetchone() == (0,)
    finally:
        conn.close()


_KEYED_20 = ("messages", "step_message_keys")
"""The tables whose `key` migration 20 makes 64-bit."""


def _unkeyed(kept: dict[str, list[str]]) -> dict[str, list[str]]:
    """The columns `kept` of each table without the message keys migration 20 changed (a
    migration from before it is checked without them; its own test checks them)."""
    return {
        table: [c for c in columns if not (c == "key" and table in _KEYED_20)]
        for table, columns in kept.items()
    }


def _snapshot_of(
    before: dict[str, Any], kept: dict[str, list[str]], columns: dict[str, list[str]]
) -> dict[str, Any]:
    """`before` (a `_snapshot` of the tables' `kept` columns) reduced to `columns`."""
    out = {}
    for table, rows in before.items():
        if table not in kept:
            out[table] = rows
            continue
        index = [kept[table].index(c) for c in columns[table]]
        out[table] = [tuple(row[i] for i in index) for row in rows]
    return out


def _usage_sent(body: str | None, events: str | None) -> str | None:
    """The usage object a response carried, decoded in Python (not by the view's SQL) and
    serialized as a writer stores `usage_raw`: the body's, or the last SSE chunk's."""
    if body is not None:
        usage = json.loads(body).get("usage")
        return None if usage is None else to_json(usage)
    found = None
    for _, line in json.loads(events or "[]"):
        if line.startswith("data: {"):
            usage = json.loads(line[len("data: ") :]).get("usage")
            found = found if usage is None else to_json(usage)
    return found


def _check_once_in_response(conn: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    """Every step and call the base tables keep without a usage, a request id or raw
    arguments gives them back through the views as the response and the parsed arguments
    hold them (decoded in Python); how many of each are stored once."""
    steps = conn.execute(
        "SELECT v.usage_raw, v.request_id, t.usage_from, t.request_id_in_headers, "
        "t.response_body, t.stream_events, t.response_headers FROM step_rows t "
        "JOIN steps v USING (run_id, idx) "
        "WHERE t.usage_raw IS NULL OR t.request_id IS NULL"
    ).fetchall()
    usages = ids = 0
    for usage, request_id, usage_from, in_headers, body, events, headers in steps:
        if usage_from is not None:
            usages += 1
            assert usage == _usage_sent(body, events)
        if in_headers:
            ids += 1
            assert request_id == json.loads(headers)["x-request-id"]
    calls = conn.execute(
        "SELECT v.arguments_raw, v.arguments FROM tool_call_rows t "
        "JOIN tool_calls v USING (run_id, step_idx, call_idx) WHERE t.arguments_raw IS NULL"
    ).fetchall()
    for raw, arguments in calls:
        assert raw == arguments and json.loads(raw) is not None
    return usages, ids, len(calls)


def test_a_recorded_usage_request_id_and_arguments_are_stored_once(
    tmp_path: Path, sim: SimServer
) -> None:
    """A step's usage (in the body, or the stream's usage chunk), its request id (the
    response's `x-request-id`) and a call's raw arguments (the text of the parsed ones) are
    stored once by the insert itself: nothing waits for a later step."""
    db = tmp_path / "t.duckdb"
    for seed, stream in ((2, False), (3, True)):
        record(db, sim.base_url, "chain_short", stream=stream, seed=seed)
    conn = open_for_reading(db)
    try:
        usages, ids, calls = _check_once_in_response(conn)
        total = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE streamed), count(usage_raw), "
            "count(request_id) FROM step_rows"
        ).fetchone()
        assert total is not None and 0 < total[1] < total[0]
        assert (usages, ids, total[2], total[3]) == (total[0], total[0], 0, 0)
        assert calls > 0
        assert conn.execute("SELECT count(arguments_raw) FROM tool_call_rows").fetchone() == (0,)
    finally:
        conn.close()


_FULL_STEPS = (
    "SELECT "
    + ", ".join(
        f"t.{f}" if f in ("replayed", "reasoning_replayed", "usage_from") else f"v.{f}"
        for f in COLUMNS["steps"]
    )
    + " FROM step_rows t JOIN steps v ON v.run_id = t.run_id AND v.idx = t.idx "
)
"""Every field of each step's row type: the view's values, the base table's flags."""


def test_a_value_the_response_does_not_give_back_exactly_is_kept_in_full(
    tmp_path: Path, sim: SimServer
) -> None:
    """Byte for byte or not at all: a usage serialized otherwise, a body that is not JSON,
    an id the headers do not name, a NULL beside a header that names one, raw arguments
    spaced otherwise are kept as given, and the views give every value back as inserted."""
    source = tmp_path / "source.duckdb"
    record(source, sim.base_url, "chain_short", stream=True, seed=3, max_steps=2)
    reader = open_for_reading(source)
    try:
        step = StepRow(*reader.execute(_FULL_STEPS + "LIMIT 1").fetchone())._replace(
            replayed=False,
            reasoning_replayed=False,  # its copies have no next step
        )
        fields = ", ".join(COLUMNS["tool_calls"])
        call = ToolCallRow(
            *reader.execute(f"SELECT {fields} FROM tool_calls WHERE json_valid LIMIT 1").fetchone()
        )
    finally:
        reader.close()
    assert step.usage_raw is not None and step.stream_events is not None
    usage = json.loads(step.usage_raw)
    body = json.dumps({"id": "x", "usage": usage}, separators=(",", ":"))
    events = json.loads(step.stream_events)
    events = [e for e in events if e[1] != "data: [DONE]"]  # the usage chunk last
    ending = [*events[:-1], [None, events[-1][1].replace("data: ", "data:")]]
    spaced = json.dumps(usage, separators=(",", ":"))
    headers = '{"x-request-id": "req-1"}'
    plain = step._replace(streamed=False, stream_events=None, response_body=body, usage_from=1)
    steps = [
        plain._replace(idx=100),  # once: the body's usage
        plain._replace(idx=101, usage_raw=spaced),  # the same value, other bytes: kept
        plain._replace(idx=102, response_body="not json", usage_raw=spaced),
        plain._replace(idx=103, usage_raw=None),  # none stored, though the body has one
        step._replace(idx=104, stream_events=json.dumps(events), usage_from=1),  # the last line
        step._replace(idx=105, stream_events=json.dumps(ending), usage_from=1),  # `data:`
        plain._replace(idx=106, response_headers=headers, request_id="req-1"),  # once
        plain._replace(idx=107, response_headers=headers, request_id="req-2"),
        plain._replace(idx=108, response_headers=headers, request_id=None),
        plain._replace(idx=109, response_headers='{"request-id": "r"}', request_id="r"),
    ]
    calls = [
        call._replace(step_idx=100),  # once: the text of the parsed arguments
        call._replace(step_idx=101, arguments_raw=" " + call.arguments_raw),
        call._replace(step_idx=102, arguments_raw="{bad", arguments=None, json_valid=False),
    ]
    db = tmp_path / "t.duckdb"
    shutil.copyfile(source, db)
    conn = open_for_writing(db)
    try:
        insert_rows(conn, "steps", steps)
        insert_rows(conn, "tool_calls", calls)
        stored = conn.execute(
            "SELECT usage_from, usage_raw IS NULL, request_id_in_headers, request_id IS NULL "
            "FROM step_rows WHERE idx >= 100 ORDER BY idx"
        ).fetchall()
        back = conn.execute(_FULL_STEPS + "WHERE t.idx >= 100 ORDER BY t.idx").fetchall()
        viewed = conn.execute(
            "SELECT request_id, usage_raw FROM steps WHERE idx >= 100 ORDER BY idx"
        ).fetchall()
        kept = conn.execute(
            "SELECT arguments_raw IS NULL FROM tool_call_rows WHERE step_idx >= 100 "
            "ORDER BY step_idx"
        ).fetchall()
        fields = ", ".join(COLUMNS["tool_calls"])
        calls_back = conn.execute(
            f"SELECT {fields} FROM tool_calls WHERE step_idx >= 100 ORDER BY step_idx"
        ).fetchall()
    finally:
        conn.close()
    # Each step as given, but where its usage is: the writer's guess, kept where it holds.
    back = [
        StepRow(*row)._replace(usage_from=given.usage_from)
        for row, given in zip(back, steps, strict=True)
    ]
    for given, got in zip(steps, back, strict=True):
        assert given == got, [
            (f, a, b) for f, a, b in zip(given._fields, given, got, strict=True) if a != b
        ]
    assert viewed == [(s.request_id, s.usage_raw) for s in steps]
    assert [tuple(c) for c in calls] == calls_back
    assert kept == [(True,), (False,), (False,)]
    # (The recorded step's own request id is its headers' `x-request-id`: stored once.)
    assert stored == [
        (1, True, True, True),
        (None, False, True, True),
        (None, False, True, True),
        (None, True, True, True),
        (1, True, True, True),
        (None, False, True, True),
        (1, True, True, True),
        (1, True, False, False),
        (1, True, False, True),
        (1, True, False, False),  # `request-id` alone: not looked at, kept
    ]


@pytest.mark.slow
def test_migration_21_keeps_every_step_and_call(tmp_path: Path, sim: SimServer) -> None:
    """A store at schema 19 (every usage, request id and raw arguments in full; recorded
    streamed and not, and imported) is converted: what the response and the parsed arguments
    hold is stored once, every value of every table and view as before, row for row and
    `EXCEPT ALL` both ways against an unconverted copy."""
    source = tmp_path / "source.duckdb"
    record(source, sim.base_url, "chain_short", stream=False, seed=2)
    record(source, sim.base_url, "chain_short", stream=True, seed=3)
    _imported(source)
    old = tmp_path / "old.duckdb"
    kept, before = _old_snapshot(old, source, 19)
    assert before["step_rows"] and before["tool_calls"]
    full = tmp_path / "full.duckdb"
    shutil.copyfile(old, full)
    open_for_writing(old).close()
    conn = open_for_reading(old)
    try:
        # The message keys (migration 20's, checked by its own test) aside.
        unkeyed = _unkeyed(kept)
        assert _snapshot(conn, unkeyed) == _snapshot_of(before, kept, unkeyed)
        usages, ids, calls = _check_once_in_response(conn)
        assert usages > 0 and ids > 0 and calls > 0
        conn.execute(f"ATTACH '{full}' AS full_copy (READ_ONLY)")
        for table in ("steps", "tool_calls"):
            for a, b in ((table, f"full_copy.{table}"), (f"full_copy.{table}", table)):
                left = conn.execute(
                    f"SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b})"
                ).fetchone()
                assert left == (0,), (a, b)
    finally:
        conn.close()

"""The store: migrations, documentation of every column, durable group-committed writes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from traces.errors import DatabaseError
from traces.model import (
    RunOutcome,
    RunRecord,
    RunStatus,
    StepRecord,
    Termination,
    ToolCallRecord,
    ToolErrorKind,
    ToolResultRecord,
    message_hash,
)
from traces.store.database import open_for_reading, open_for_writing, resolve_db_path
from traces.store.migrations import MIGRATIONS, latest_version
from traces.store.recorder import Recorder
from traces.store.schema_docs import TABLES

from conftest import migrate_to


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _run(run_id: str, pid: int | None = None) -> RunRecord:
    return RunRecord(
        id=run_id,
        task="t",
        task_path="t.toml",
        task_sha256="0" * 64,
        provider="sim",
        model="m",
        base_url="http://127.0.0.1:1/v1",
        settings={"stream": False},
        seed=1,
        started_at=_now(),
        recorder_pid=pid if pid is not None else os.getpid(),
        recorder_host=socket.gethostname(),
    )


def _step(run_id: str, index: int, hashes: list[str]) -> StepRecord:
    return StepRecord(
        run_id=run_id,
        index=index,
        started_at=_now(),
        latency_ms=1.5,
        streamed=False,
        request_params={"model": "m"},
        request_message_count=len(hashes),
        request_prefix=0,
        request_new_hashes=hashes,
        response_body="{}",
        finish_reason_raw="tool_calls",
        finish_reason="tool_calls",
        reasoning="think",
        reasoning_source="reasoning_content",
        tool_calls=[
            ToolCallRecord(
                index=0,
                id="call_1",
                id_format="openai",
                name="f",
                arguments_raw='{"a": 1}',
                arguments_type="string",
                arguments={"a": 1},
                json_valid=True,
                schema_valid=True,
            )
        ],
    )


def test_migrations_are_idempotent_and_versioned(db_path: Path) -> None:
    open_for_writing(db_path).close()
    conn = open_for_writing(db_path)
    versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    conn.close()
    # Each migration once, in order (numbers may skip one a parallel branch took).
    assert versions == [(number,) for number, _, _ in MIGRATIONS]
    assert versions[-1] == (latest_version(),)


def _upgraded(db_path: Path, version: int, insert: str) -> duckdb.DuckDBPyConnection:
    """Open for writing a database a release at schema `version` left with the row `insert`."""

    old = duckdb.connect(str(db_path))
    migrate_to(old, version)
    old.execute(insert)
    old.close()
    return open_for_writing(db_path)


def test_an_old_database_is_upgraded_in_place_keeping_its_runs(db_path: Path) -> None:
    conn = _upgraded(
        db_path,
        1,
        "INSERT INTO runs (id, task, task_path, task_sha256, provider, model, base_url, settings,"
        " seed, status, started_at, recorder_pid, recorder_host) VALUES ('r1', 't', 'p', 'h',"
        " 'sim', 'm', 'u', '{}', 1, 'completed', now(), 1, 'h')",
    )
    row = conn.execute("SELECT id, origin, failure_summary FROM runs").fetchall()
    conn.close()
    assert row == [("r1", "recorded", None)]


def test_a_database_of_the_previous_version_gets_tool_error_kinds(db_path: Path) -> None:
    conn = _upgraded(
        db_path,
        3,
        "INSERT INTO tool_results (run_id, step_idx, call_idx, tool_call_id, name, output, "
        "error, started_at, duration_ms) VALUES "
        "('r1', 0, 0, 'c', 'read_file', 'Error: x', 'x: path is outside the sandbox', now(), 1)",
    )
    row = conn.execute("SELECT error, error_kind FROM tool_results").fetchall()
    version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    conn.close()
    # The stored error keeps its text; its kind was never recorded, so it stays unknown.
    assert row == [("x: path is outside the sandbox", None)]
    assert version == (latest_version(),)


def test_tool_error_kinds_round_trip_through_the_recorder(db_path: Path) -> None:
    hashes = [message_hash({"role": "user", "content": "u"})]
    kinds: list[ToolErrorKind | None] = [*ToolErrorKind, None]

    async def scenario() -> None:
        recorder = Recorder(db_path)
        try:
            await recorder.begin_run(_run("r1"))
            await recorder.record_step(_step("r1", 0, hashes), {hashes[0]: {"role": "user"}})
            await recorder.record_tool_results(
                "r1",
                0,
                [
                    ToolResultRecord(
                        index=i,
                        tool_call_id=f"call_{i}",
                        name="f",
                        output="out",
                        error=None if kind is None else f"failed as {kind}",
                        error_kind=kind,
                        started_at=_now(),
                        duration_ms=0.5,
                    )
                    for i, kind in enumerate(kinds)
                ],
            )
        finally:
            recorder.close()

    asyncio.run(scenario())
    conn = open_for_reading(db_path)
    rows = conn.execute(
        "SELECT call_idx, error, error_kind FROM tool_results ORDER BY call_idx"
    ).fetchall()
    conn.close()
    assert rows == [
        (i, None if kind is None else f"failed as {kind}", None if kind is None else kind.value)
        for i, kind in enumerate(kinds)
    ]


def test_every_column_is_documented(db_path: Path) -> None:
    conn = open_for_writing(db_path)
    rows = conn.execute(
        "SELECT table_name, column_name, comment FROM duckdb_columns() "
        "WHERE schema_name = 'main' AND NOT internal"
    ).fetchall()
    conn.close()
    undocumented = [(t, c) for t, c, comment in rows if not comment]
    assert rows and undocumented == []
    assert {t for t, _, _ in rows} == set(TABLES)


def test_every_termination_reason_is_documented() -> None:
    """`traces schema` names each value the column can hold, and no other."""
    text = TABLES["runs"][1]["termination"]
    named = set(re.findall(r"[a-z_]+", text.split(":", 1)[1]))
    assert named == {t.value for t in Termination}


def test_db_path_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACES_DB", raising=False)
    assert resolve_db_path(None) == Path("traces.duckdb")
    monkeypatch.setenv("TRACES_DB", "/tmp/x.duckdb")
    assert resolve_db_path(None) == Path("/tmp/x.duckdb")
    assert resolve_db_path("y.duckdb") == Path("y.duckdb")


def test_reading_missing_or_foreign_database_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="no trace database"):
        open_for_reading(tmp_path / "absent.duckdb")
    foreign = tmp_path / "foreign.duckdb"
    duckdb.connect(str(foreign)).close()
    with pytest.raises(DatabaseError, match="not a trace database"):
        open_for_reading(foreign)
    text = tmp_path / "text.duckdb"
    text.write_text("hello")
    with pytest.raises(DatabaseError):
        open_for_reading(text)


def test_recorder_round_trip_and_message_dedup(db_path: Path) -> None:
    system = {"role": "system", "content": "s"}
    user = {"role": "user", "content": "u"}
    hashes = [message_hash(system), message_hash(user)]

    async def scenario() -> None:
        recorder = Recorder(db_path)
        try:
            await recorder.begin_run(_run("r1"))
            await recorder.begin_run(_run("r2"))
            # Both runs send the same two messages: they must be stored once.
            for run_id in ("r1", "r2"):
                await recorder.record_step(
                    _step(run_id, 0, hashes), dict(zip(hashes, [system, user], strict=True))
                )
                await recorder.record_tool_results(
                    run_id,
                    0,
                    [
                        ToolResultRecord(
                            index=0,
                            tool_call_id="call_1",
                            name="f",
                            output="ok",
                            started_at=_now(),
                            duration_ms=0.1,
                        )
                    ],
                )
            await recorder.end_run(
                "r1",
                RunOutcome(
                    status=RunStatus.COMPLETED,
                    termination=Termination.COMPLETED,
                    ended_at=_now(),
                    success=True,
                    steps=1,
                    tool_calls=1,
                ),
            )
        finally:
            recorder.close()

    asyncio.run(scenario())
    conn = open_for_reading(db_path)
    assert conn.execute("SELECT count(*) FROM messages").fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM steps").fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM tool_calls").fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM tool_results").fetchone() == (2,)
    status = dict(conn.execute("SELECT id, status FROM runs").fetchall())
    assert status == {"r1": "completed", "r2": "running"}
    rebuilt = conn.execute("SELECT role FROM request_messages('r1', 0)").fetchall()
    conn.close()
    assert rebuilt == [("system",), ("user",)]


def test_runs_of_dead_recorders_become_interrupted(db_path: Path) -> None:
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process

    async def scenario() -> None:
        recorder = Recorder(db_path)
        try:
            await recorder.begin_run(_run("dead", pid=dead_pid))
            await recorder.record_step(_step("dead", 0, []), {})
        finally:
            recorder.close()

    asyncio.run(scenario())
    Recorder(db_path).close()  # the next writer notices the dead recorder
    conn = open_for_reading(db_path)
    row = conn.execute("SELECT status, termination, steps FROM runs WHERE id='dead'").fetchone()
    conn.close()
    assert row == ("interrupted", "interrupted", 1)


def test_requests_rebuild_even_when_history_is_rewritten(db_path: Path) -> None:
    """Prefix sharing stays exact when a request edits earlier history (not only appends)."""
    msgs = {name: {"role": "user", "content": name} for name in "abcdxy"}
    h = {name: message_hash(m) for name, m in msgs.items()}
    requests = [["a", "b"], ["a", "b", "c", "d"], ["a", "x"], ["a", "x", "y"]]
    prefixes = [0, 2, 1, 2]

    async def scenario() -> None:
        recorder = Recorder(db_path)
        try:
            await recorder.begin_run(_run("r"))
            for idx, (request, prefix) in enumerate(zip(requests, prefixes, strict=True)):
                step = _step("r", idx, [h[n] for n in request])
                step.request_prefix = prefix
                step.request_new_hashes = [h[n] for n in request[prefix:]]
                await recorder.record_step(step, {h[n]: msgs[n] for n in request})
        finally:
            recorder.close()

    asyncio.run(scenario())
    conn = open_for_reading(db_path)
    for idx, request in enumerate(requests):
        rows = conn.execute("SELECT hash FROM request_messages('r', ?)", [idx]).fetchall()
        assert [r[0] for r in rows] == [h[n] for n in request], idx
    conn.close()


def test_two_recorders_share_one_store_through_one_server(db_path: Path) -> None:
    # Both send the same system prompt, and each its own user message: the server's writer
    # stores the prompt once (no index refuses a second copy since migration 14: the writer
    # skips what it stored itself, `traces.store.numbers`), and each step names its
    # messages by the numbers they were stored under.
    system = {"role": "system", "content": "the same prompt"}
    users = {run: {"role": "user", "content": f"task {run}"} for run in ("a", "b")}

    def sent(run_id: str, index: int) -> tuple[StepRecord, dict[str, dict[str, str]]]:
        messages = [system, users[run_id]] if index == 0 else []
        hashes = [message_hash(m) for m in messages]
        return _step(run_id, index, hashes), dict(zip(hashes, messages, strict=True))

    async def scenario() -> None:
        first, second = Recorder(db_path), Recorder(db_path)
        try:
            assert first.writer_pid == second.writer_pid  # the second joined the first's server
            await first.begin_run(_run("a"))
            await second.begin_run(_run("b"))
            # Queued by both before either is acknowledged: one commit, or two in turn.
            for index in range(3):
                await asyncio.gather(
                    first.record_step(*sent("a", index)), second.record_step(*sent("b", index))
                )
            # A reader meanwhile sees what both committed, through the same server.
            with open_for_reading(db_path) as conn:
                rows = conn.execute(
                    "SELECT run_id, count(*) FROM steps GROUP BY ALL ORDER BY 1"
                ).fetchall()
            assert rows == [("a", 3), ("b", 3)]
        finally:
            first.close()
            second.close()

    asyncio.run(scenario())
    # The last client out waited for the server to let go of the file.
    duckdb.connect(str(db_path)).close()
    with open_for_reading(db_path) as conn:
        stored = conn.execute("SELECT role, count(*) FROM messages GROUP BY 1 ORDER BY 1")
        assert stored.fetchall() == [("system", 1), ("user", 2)]
        for run_id in ("a", "b"):
            rebuilt = conn.execute(
                "SELECT body FROM request_messages(?, 0) ORDER BY position", [run_id]
            ).fetchall()
            assert [json.loads(body) for (body,) in rebuilt] == [system, users[run_id]]


@pytest.mark.slow
def test_a_program_holding_the_file_gives_the_one_line_locked_error(db_path: Path) -> None:
    Recorder(db_path).close()
    holder = duckdb.connect(str(db_path))  # not a traces command: it cannot be shared
    try:
        with pytest.raises(DatabaseError) as caught:
            Recorder(db_path)  # its server waits a few seconds for the lock, then fails
    finally:
        holder.close()
    message = str(caught.value)
    assert message == (
        f"{db_path}: the database is locked by another program (process {os.getpid()}, "
        f"{Path('/proc/self/exe').resolve().name}) (traces commands share a store; others "
        "must close it first)"
    )


def test_a_file_that_is_not_a_database_is_a_one_line_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.duckdb"
    text.write_text("hello")
    with pytest.raises(DatabaseError) as caught:
        Recorder(text)
    assert str(caught.value).startswith(f"{text}: ")
    assert "\n" not in str(caught.value)


def _stop(pid: int) -> None:
    """SIGSTOP `pid` and wait until every thread of it has stopped: the signal is delivered
    asynchronously, and a loaded machine let a server commit a step sent just after it."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        if states and all(state in ("T", "t") for state in states):
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} did not stop")


def test_when_the_server_dies_the_recorder_resends_to_a_new_one(db_path: Path) -> None:
    async def scenario() -> None:
        recorder = Recorder(db_path)
        server = recorder.writer_pid
        assert server is not None
        try:
            await recorder.begin_run(_run("r"))
            _stop(server)  # it receives the step but cannot commit it
            pending = recorder.queue_step(_step("r", 0, []), {})
            await asyncio.sleep(0.2)
            assert not pending.done()
            os.kill(server, signal.SIGKILL)
            # Another server takes over; the step is sent again and committed once.
            await asyncio.wait_for(pending, timeout=30)
            assert recorder.writer_pid not in (None, server)
            await recorder.record_step(_step("r", 1, []), {})
        finally:
            recorder.close()

    asyncio.run(scenario())
    conn = open_for_reading(db_path)
    assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    assert conn.execute("SELECT idx FROM steps ORDER BY idx").fetchall() == [(0,), (1,)]
    assert conn.execute("SELECT count(*) FROM tool_calls").fetchone() == (2,)
    conn.close()


def test_when_no_server_can_take_over_later_records_fail_instead_of_hanging(
    db_path: Path,
) -> None:
    async def scenario() -> None:
        recorder = Recorder(db_path)
        server = recorder.writer_pid
        assert server is not None
        try:
            await recorder.begin_run(_run("r"))
            _stop(server)
            pending = recorder.queue_step(_step("r", 0, []), {})
            await asyncio.sleep(0.1)
            # The next server cannot open this: the file is gone, a directory in its place.
            db_path.unlink()
            Path(f"{db_path}.wal").unlink(missing_ok=True)
            db_path.mkdir()
            os.kill(server, signal.SIGKILL)
            with pytest.raises(DatabaseError, match="recording failed: the store's server exited"):
                await asyncio.wait_for(pending, timeout=30)
            with pytest.raises(DatabaseError, match="recording failed"):
                await recorder.record_step(_step("r", 1, []), {})
        finally:
            recorder.close()

    asyncio.run(scenario())


def test_failures_view_counts_verdicts_not_missing_ones(db_path: Path) -> None:
    conn = open_for_writing(db_path)
    for run_id, termination, success in [
        ("imported", "completed", None),  # no task check: not a failure
        ("passed", "completed", True),
        ("wrong", "completed", False),
        ("stuck", "max_steps", None),
    ]:
        conn.execute(
            "INSERT INTO runs (id, task, task_path, task_sha256, provider, model, base_url,"
            " settings, seed, status, termination, success, started_at, recorder_pid,"
            " recorder_host) VALUES (?, 't', 'p', 'h', 'sim', 'm', 'u', '{}', 1, 'completed',"
            " ?, ?, now(), 1, 'h')",
            [run_id, termination, success],
        )
    rows = conn.execute("SELECT termination, runs FROM failures ORDER BY 1").fetchall()
    conn.close()
    assert rows == [("completed", 1), ("max_steps", 1)]

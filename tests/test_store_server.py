"""A store shared while it is written: reads during a recording, many writers, kills at any time.

Real processes on real files: `traces record`, `traces import`, `traces sql` as a user runs
them, recording processes that print each acknowledged step, and the store's server they all
talk to (`traces.store.server`), killed with -9 where the test says so.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from traces.errors import DatabaseError
from traces.model import RunRecord, message_hash
from traces.sim.config import SimConfig
from traces.sim.server import SimServer
from traces.store import rendezvous
from traces.store.database import (
    is_served,
    open_file_for_writing,
    open_for_reading,
    open_for_writing,
)
from traces.store.inserts import insert_rows
from traces.store.recorder import Recorder
from traces.store.rows import run_row
from traces.store.tables import MessageRow, StepMessageRow
from traces.store.writer_process import Recording, Writer

from conftest import REPO, TASKS, query_rows, run_cli

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="kills processes, reads /proc")

# A recording process without HTTP: it records STEPS steps of run RUN_ID one at a time,
# awaiting each, and prints the index of every step whose commit was acknowledged; the
# server's pid first, and again whenever another server took over.
_ACKING_RECORDER = """
import asyncio, os, socket, sys
from datetime import datetime
from pathlib import Path
from traces.model import RunOutcome, RunRecord, RunStatus, StepRecord, Termination
from traces.store.recorder import Recorder

db, run_id, steps = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
pauses = {int(i) for i in sys.argv[4].split(",") if i}

async def main(recorder):
    print(f"server {recorder.writer_pid}", flush=True)
    now = datetime.now()
    await recorder.begin_run(RunRecord(
        id=run_id, task="t", task_path="t.toml", task_sha256="0" * 64, provider="p",
        model="m", base_url="http://127.0.0.1:1/v1", settings={}, seed=0, started_at=now,
        recorder_pid=os.getpid(), recorder_host=socket.gethostname()))
    server = recorder.writer_pid
    for i in range(steps):
        await recorder.record_step(StepRecord(
            run_id=run_id, index=i, started_at=now, latency_ms=1.0, streamed=False,
            request_params={"model": "m"}, request_message_count=0, request_prefix=0,
            request_new_hashes=[], response_body="x" * 2000), {})
        if recorder.writer_pid != server:
            server = recorder.writer_pid
            print(f"server {server}", flush=True)
        print(f"acked {i}", flush=True)
        if i in pauses:
            sys.stdin.readline()  # until the test lets it go on
    await recorder.end_run(run_id, RunOutcome(
        status=RunStatus.COMPLETED, termination=Termination.COMPLETED, ended_at=datetime.now(),
        steps=steps))

recorder = Recorder(db)
try:
    asyncio.run(main(recorder))
finally:
    recorder.close()
"""


class Acking:
    """An acking recording process and what it has said so far."""

    def __init__(self, db: Path, run_id: str, steps: int, pauses: Iterable[int] = ()) -> None:
        """Start it; after acknowledging each step in `pauses`, it waits until released."""
        pause_list = ",".join(map(str, pauses))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ACKING_RECORDER, str(db), run_id, str(steps), pause_list],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.acked = -1
        self.servers: list[int] = []
        self._read_line()

    def _read_line(self) -> bool:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            return False
        kind, value = line.split()
        if kind == "server":
            self.servers.append(int(value))
        else:
            self.acked = int(value)
        return True

    def until_acked(self, index: int) -> None:
        """Read its output until step `index` is acknowledged."""
        while self.acked < index:
            assert self._read_line(), f"the recorder ended before step {index}"

    def release(self) -> None:
        """Let a paused recorder go on."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def finish(self) -> int:
        """Read to the end; its exit code."""
        while self._read_line():
            pass
        return self.proc.wait(timeout=120)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def _steps(db: Path, run_id: str) -> list[int]:
    rows = query_rows(db, "SELECT idx FROM steps WHERE run_id = ? ORDER BY idx", [run_id])
    return [row["idx"] for row in rows]


def _wait_gone(pid: int, timeout: float = 30) -> None:
    assert rendezvous.wait_exited(pid, timeout), f"process {pid} is still running"


@pytest.fixture(scope="module")
def slow_sim() -> Iterator[SimServer]:
    """A simulator slow enough (10 ms a step) that a recording is still going when read."""
    with SimServer(SimConfig(latency_ms=10)) as server:
        yield server


# -- reading while a recording goes on --------------------------------------------------------


@pytest.mark.slow
def test_every_acknowledged_step_is_visible_to_the_next_read(db_path: Path) -> None:
    # It waits at each read, so it is still recording when read, however slow the reads.
    pauses = (5, 60, 200)
    recorder = Acking(db_path, "r", 210, pauses)
    try:
        for index in pauses:
            recorder.until_acked(index)
            # A read command, as a user runs it, while the recorder holds the store.
            done = run_cli(
                "sql", "select count(*) as n from steps", "--db", str(db_path), "-f", "json"
            )
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)[0]["n"] >= index + 1
            listed = run_cli("runs", "--db", str(db_path), "-f", "json")
            [run] = json.loads(listed.stdout)
            assert run["status"] == "running" and run["steps"] >= index + 1
            recorder.release()
    finally:
        assert recorder.finish() == 0
    assert _steps(db_path, "r") == list(range(210))


@pytest.mark.slow
def test_a_recording_command_can_be_read_while_it_records(
    slow_sim: SimServer, db_path: Path
) -> None:
    # Its running runs checked as often as can be: their findings so far show too.
    env = {**os.environ, "TRACES_LIVE_CHECK_S": "0.1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "analyzer",
            "record",
            "--task",
            str(TASKS / "chain.toml"),
            "--base-url",
            slow_sim.base_url,
            "--model",
            "sim-reasoner-1",
            "--api-key-env",
            "HOME",
            "--no-stream",
            "--repeat",
            "2",
            "--max-steps",
            "150",
            "--db",
            str(db_path),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        seen: list[int] = []
        so_far: list[dict[str, Any]] = []
        while (len(seen) < 3 or not so_far) and proc.poll() is None:
            done = run_cli("runs", "--db", str(db_path), "-f", "json")
            if done.returncode == 4 and "no trace database" in done.stderr:
                continue  # not created yet
            assert done.returncode == 0, done.stderr
            runs = json.loads(done.stdout)
            total = sum(run["steps"] for run in runs)
            if runs and all(run["status"] == "running" for run in runs):
                seen.append(total)
                so_far += [run for run in runs if run["findings_so_far"]]
        assert len(seen) >= 3, "the recording ended before it could be read three times"
        assert seen == sorted(seen) and seen[-1] > seen[0]  # it moves, and never back
        # A running run's findings so far (its summary, if only ""), up to a step it had.
        assert so_far, "no running run was checked while the recording went on"
        assert all(0 <= run["findings_through_step"] < run["steps"] for run in so_far)
        assert all(isinstance(run["failures"], str) for run in so_far)
        # Every other reading command works on it too.
        for args in (["failures"], ["show", "last"], ["steps"], ["schema", "runs"]):
            done = run_cli(*args, "--db", str(db_path))
            assert done.returncode == 0, (args, done.stderr)
    finally:
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert len(out.split()) == 2


def test_a_served_session_behaves_like_a_duckdb_connection(db_path: Path) -> None:
    direct = duckdb.connect()  # what DuckDB itself answers
    recorder = Recorder(db_path)
    try:
        with open_for_reading(db_path) as conn:
            assert is_served(conn)
            for sql, params in [
                ("SELECT range AS n, 'x' || range AS s FROM range(5000)", None),
                ("SELECT ?::INTEGER AS a, ?::VARCHAR AS b", [1, "two"]),
                ("SELECT $1::INTEGER[] AS xs", [[1, 2, 3]]),
            ]:
                got = conn.execute(sql, params)
                assert [d[0] for d in got.description or []] == [
                    d[0] for d in direct.execute(sql, params).description or []
                ]
                assert got.fetchall() == direct.execute(sql, params).fetchall()
            cursor = conn.execute("SELECT * FROM range(5000)")
            assert cursor.fetchone() == (0,)
            assert cursor.fetchmany(3) == [(1,), (2,), (3,)]
            assert len(cursor.fetchall()) == 4996 and cursor.fetchone() is None
            with pytest.raises(duckdb.CatalogException) as missing:
                conn.execute("SELECT * FROM no_such_table")
            with pytest.raises(duckdb.CatalogException) as missing_direct:
                direct.execute("SELECT * FROM no_such_table")
            assert str(missing.value) == str(missing_direct.value)
            with pytest.raises(duckdb.Error, match="read-only"):
                conn.execute("DELETE FROM runs")
            assert conn.execute("SELECT 42").fetchone() == (42,)  # the session goes on
            with pytest.raises(DatabaseError, match="not available"):
                conn.sql("SELECT 1")
    finally:
        direct.close()
        recorder.close()


@pytest.mark.slow
def test_the_sql_contract_holds_on_a_served_store(db_path: Path, tmp_path: Path) -> None:
    Recorder(db_path).close()
    csv = tmp_path / "x.csv"
    csv.write_text("a\n1\n")
    recorder = Recorder(db_path)
    try:
        for args, code, fragment in [
            (["select * from nowhere"], 2, "SQL error: Catalog Error"),
            (["selec 1"], 2, "SQL error: Parser Error"),
            (["delete from runs"], 2, "refused"),
            # DuckDB 1.5's parser refuses a writing CTE before the read-only session can.
            (
                ["with d as (delete from runs returning *) select * from d"],
                2,
                "read-only|A CTE needs a SELECT",
            ),
            ([f"select * from read_csv('{csv}')"], 2, "--allow-files"),
            ([f"select * from read_csv('{csv}')", "--allow-files"], 4, "run the query again"),
        ]:
            done = run_cli("sql", *args, "--db", str(db_path))
            assert done.returncode == code, (args, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and re.search(fragment, lines[0]), (args, done.stderr)
        done = run_cli("sql", "select count(*) as n from runs", "--db", str(db_path), "-f", "json")
        assert json.loads(done.stdout) == [{"n": 0}]
    finally:
        recorder.close()


# -- many writers ---------------------------------------------------------------------------------


def _conversation_log(path: Path, conversations: int, steps: int) -> Path:
    """An exchange log of agent conversations that all share their system prompt."""
    lines = []
    for c in range(conversations):
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a careful agent."},
            {"role": "user", "content": f"task {c}"},
        ]
        for s in range(steps):
            reply = {"role": "assistant", "content": f"step {s} of {c}"}
            lines.append(
                {
                    "conversation": f"c{c}",
                    "request": {"model": "m", "messages": list(messages)},
                    "response": {
                        "choices": [{"index": 0, "message": reply, "finish_reason": "stop"}]
                    },
                }
            )
            messages += [reply, {"role": "user", "content": f"go on {s}"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("TRACES_DB", None)
    return subprocess.Popen(
        [sys.executable, "-m", "analyzer", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_failed_command_that_found_no_file_keeps_what_others_committed(
    db_path: Path, tmp_path: Path
) -> None:
    """Commands started together each find no file and each think they created it: one that
    fails after another committed and left must not remove the file (it lost that other's
    import, 1 run in about 12 of the four-writer test below)."""
    from traces.store.database import remove_created

    log = _conversation_log(tmp_path / "log.jsonl", conversations=1, steps=2)
    assert not db_path.exists()
    run_cli("import", str(log), "--db", str(db_path))  # another command, committed and gone
    remove_created(db_path)  # what the failing one does, believing it created the file
    assert len(query_rows(db_path, "SELECT id FROM runs")) == 1
    empty = tmp_path / "empty.duckdb"
    Recorder(empty).close()  # created and migrated, nothing committed: still removed
    remove_created(empty)
    assert not empty.exists()


def test_an_import_that_inserts_a_message_committed_after_it_began_stores_it_once(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message another session committed after the import's transaction began: before
    migration 14 the import's insert of it failed on the key's index, and the import started
    over; now no index refuses it, and the import's commit drops its own copy (the server's
    reconciliation), its steps naming the committed one: stored once, read whole."""
    from traces.importing import importer, writer
    from traces.store.server import lost_to_a_concurrent_commit

    log = _conversation_log(tmp_path / "log.jsonl", conversations=2, steps=3)
    monkeypatch.setattr(writer, "FLUSH_ROWS", 1)  # its transaction begins at its first row
    Recorder(db_path).close()
    holder = open_for_writing(db_path)  # keeps the store served throughout
    failures: list[BaseException] = []
    real_import_all = importer._import_all

    def counting(*args: Any, **kwargs: Any) -> Any:
        try:
            return real_import_all(*args, **kwargs)
        except BaseException as exc:
            failures.append(exc)
            raise

    monkeypatch.setattr(importer, "_import_all", counting)
    lines_seen = 0

    def meanwhile(_: int) -> None:
        # After the first line is inserted (the transaction begun), another session commits
        # every message of the log.
        nonlocal lines_seen
        lines_seen += 1
        if lines_seen == 2:
            holder.execute("BEGIN TRANSACTION")
            for line in log.read_text().splitlines():
                for message in json.loads(line)["request"]["messages"]:
                    row = MessageRow(
                        hash=message_hash(message), role=message["role"], body=json.dumps(message)
                    )
                    insert_rows(holder, "messages", [row])
            holder.execute("COMMIT")

    try:
        [report] = importer.import_files(db_path, [log], on_progress=meanwhile)
    finally:
        holder.close()
    assert failures == []  # nothing to start over for
    assert len(report.runs) == 2
    [dupes] = query_rows(db_path, "SELECT count(*) - count(DISTINCT hash) AS n FROM messages")
    assert dupes["n"] == 0
    for run_id in report.runs:
        assert _steps(db_path, run_id) == [0, 1, 2]
    # Every step's message is found by its number and key (the committed copy's).
    [lost] = query_rows(
        db_path,
        "SELECT count(*) AS n FROM step_message_keys s "
        "ANTI JOIN messages m ON m.seq = s.seq AND m.key = s.key",
    )
    assert lost["n"] == 0
    assert not lost_to_a_concurrent_commit(duckdb.ConstraintException('Duplicate key "id: 1"'))


@pytest.mark.slow
@pytest.mark.parametrize("writers", [2, 4])
def test_concurrent_records_and_imports_lose_and_duplicate_nothing(
    sim: SimServer, tmp_path: Path, writers: int
) -> None:
    db = tmp_path / "shared.duckdb"
    log = _conversation_log(tmp_path / "log.jsonl", conversations=20, steps=6)
    record = [
        "record",
        "--task",
        str(TASKS / "chain_short.toml"),
        "--base-url",
        sim.base_url,
        "--model",
        "sim-reasoner-1",
        "--api-key-env",
        "HOME",
        "--repeat",
        "3",
        "--db",
        str(db),
    ]
    # Half record, half import the same log (again: the same messages, by the same hashes,
    # committed by concurrent transactions).
    commands = [
        record if i % 2 == 0 else ["import", str(log), "--again", "--db", str(db), "-f", "json"]
        for i in range(writers)
    ]
    procs = [_start(*command) for command in commands]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    recorded = [
        run
        for (out, _), c in zip(outputs, commands, strict=True)
        if c[0] == "record"
        for run in out.split()
    ]
    imports = [
        report["import"]
        for (out, _), c in zip(outputs, commands, strict=True)
        if c[0] == "import"
        for report in json.loads(out)
    ]
    imported = [
        r["id"]
        for r in query_rows(
            db, "SELECT id FROM runs WHERE import_id IN (SELECT unnest(?::VARCHAR[]))", [imports]
        )
    ]
    assert len(recorded) == 3 * (writers // 2) and len(imported) == 20 * (writers // 2)
    runs = {r["id"]: r for r in query_rows(db, "SELECT id, status, steps FROM runs")}
    assert set(runs) == set(recorded) | set(imported)
    for run_id in recorded + imported:
        # Every step of every run, once: indices 0..n-1, as many as the run counted.
        assert _steps(db, run_id) == list(range(runs[run_id]["steps"])), run_id
    for run_id in imported:
        assert runs[run_id]["steps"] == 6
    [dupes] = query_rows(db, "SELECT count(*) - count(DISTINCT hash) AS n FROM messages")
    assert dupes["n"] == 0
    # Every request rebuilds from the messages, whoever committed them first.
    for run_id in imported[:3]:
        rebuilt = query_rows(db, "SELECT count(*) AS n FROM request_messages(?, 5)", [run_id])
        assert rebuilt[0]["n"] == 12


@pytest.mark.slow
def test_two_recorders_and_a_reader_at_once(db_path: Path) -> None:
    # 150 steps each: the read comes at the second's 11th, while both still record; the
    # server spends about 20 ms of CPU on each acknowledged step, so every step costs.
    first, second = Acking(db_path, "a", 150), Acking(db_path, "b", 150)
    try:
        second.until_acked(10)
        with open_for_reading(db_path) as conn:
            assert is_served(conn)
            counts = dict(
                conn.execute("SELECT run_id, count(*) FROM steps GROUP BY run_id").fetchall()
            )
        assert counts["b"] >= 11 and "a" in counts
    finally:
        assert first.finish() == 0 and second.finish() == 0
    assert first.servers[0] == second.servers[0]  # one server for both
    assert _steps(db_path, "a") == list(range(150)) and _steps(db_path, "b") == list(range(150))
    statuses = query_rows(db_path, "SELECT id, status FROM runs ORDER BY id")
    assert statuses == [{"id": "a", "status": "completed"}, {"id": "b", "status": "completed"}]


# -- kill -9 of anyone ----------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_of_one_recorder_spares_the_other_and_its_committed_steps(db_path: Path) -> None:
    victim = Acking(db_path, "victim", 100_000)
    survivor = Acking(db_path, "survivor", 400, [300])  # still recording when its status is read
    victim.until_acked(random.randint(20, 150))
    acked = victim.acked
    victim.kill()
    try:
        survivor.until_acked(300)
        # The server closed the dead recorder's run as soon as it was gone (not when the
        # next server opens the store), and only that one.
        deadline = time.monotonic() + 10
        while True:
            with open_for_reading(db_path) as conn:
                status = dict(conn.execute("SELECT id, status FROM runs").fetchall())
            if status["victim"] != "running" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == {"victim": "interrupted", "survivor": "running"}
    finally:
        survivor.release()
        assert survivor.finish() == 0
    kept = _steps(db_path, "victim")
    assert kept == list(range(len(kept))) and len(kept) > acked
    assert _steps(db_path, "survivor") == list(range(400))
    [run] = query_rows(db_path, "SELECT steps FROM runs WHERE id = 'victim'")
    assert run["steps"] == len(kept)


@pytest.mark.slow
@pytest.mark.parametrize("when", [3, 77, 190])
def test_kill_9_of_the_server_loses_nothing_the_recorders_resend(db_path: Path, when: int) -> None:
    # Both wait after step `when` until the server is dead, so both have steps left to send
    # (when they ran on freely, a fast server let one finish before the kill).
    steps = when + 30
    first, second = Acking(db_path, "a", steps, [when]), Acking(db_path, "b", steps, [when])
    try:
        first.until_acked(when)
        second.until_acked(when)
        server = first.servers[0]
        os.kill(server, signal.SIGKILL)
        _wait_gone(server)
    finally:
        first.release()
        second.release()
        assert first.finish() == 0 and second.finish() == 0
    # Both moved on to a new server (one they shared, or, when one recorder finished before
    # the other reconnected, one each in turn: the file lock lets only one hold the store),
    # and every step is there exactly once.
    assert server not in (first.servers[-1], second.servers[-1])
    for run_id in ("a", "b"):
        assert _steps(db_path, run_id) == list(range(steps))
    # Neither run was taken for dead: their recorders were alive all along.
    statuses = {r["status"] for r in query_rows(db_path, "SELECT status FROM runs")}
    assert statuses == {"completed"}


_READER = """
import sys, time
from pathlib import Path
from traces.store.database import open_for_reading
db = Path(sys.argv[1])
while True:
    with open_for_reading(db) as conn:
        cursor = conn.execute("SELECT s.*, m.body FROM steps s, messages m LIMIT 3000")
        while cursor.fetchmany(100):
            pass
    print("read", flush=True)
"""


@pytest.mark.slow
def test_kill_9_of_readers_at_random_moments_disturbs_no_recording(db_path: Path) -> None:
    recorder = Acking(db_path, "r", 600)
    try:
        recorder.until_acked(5)
        for _ in range(4):
            reader = subprocess.Popen(
                [sys.executable, "-c", _READER, str(db_path)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert reader.stdout is not None and reader.stdout.readline() == "read\n"
            time.sleep(random.uniform(0, 0.2))
            reader.send_signal(signal.SIGKILL)
            reader.wait()
    finally:
        assert recorder.finish() == 0
    assert _steps(db_path, "r") == list(range(600))


def test_a_server_whose_starter_died_before_connecting_frees_the_store_at_once(
    db_path: Path,
) -> None:
    # A command killed between starting the server and connecting to it: the server
    # notices its starter is gone and closes the file, well before its 30 s wait for a
    # first client ends.
    starter = subprocess.Popen([sys.executable, "-c", "pass"])
    starter.wait()
    ready_read, ready_write = os.pipe()
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "traces.store.writer",
            str(db_path),
            str(ready_write),
            str(starter.pid),
        ],
        pass_fds=(ready_write,),
        cwd=REPO,
    )
    os.close(ready_write)
    with os.fdopen(ready_read) as ready:
        line = ready.readline()
    writer.wait()  # the starter half exits at once; its forked child serves
    assert line.startswith("ready "), line
    _wait_gone(int(line.split()[1]), timeout=10)
    with duckdb.connect(str(db_path)) as conn:  # the file is free
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)


# -- writers other than recorders ------------------------------------------------------------------


def test_a_write_session_commits_on_its_own_while_a_recorder_holds_the_store(
    db_path: Path,
) -> None:
    Recorder(db_path).close()
    recorder = Recorder(db_path)
    try:
        conn = open_for_writing(db_path)
        try:
            conn.execute("BEGIN TRANSACTION")
            insert_rows(conn, "messages", [MessageRow(hash="h", role="user", body="{}")])
            with open_for_reading(db_path) as reader:  # uncommitted: nobody else sees it
                assert reader.execute("SELECT count(*) FROM messages").fetchone() == (0,)
            conn.execute("COMMIT")
            with open_for_reading(db_path) as reader:
                assert reader.execute("SELECT count(*) FROM messages").fetchone() == (1,)
        finally:
            conn.close()
    finally:
        recorder.close()
    assert query_rows(db_path, "SELECT hash FROM messages") == [{"hash": "h"}]


def test_concurrent_transactions_storing_the_same_message_both_commit(db_path: Path) -> None:
    """Messages are stored once, by hash: the later of two transactions that inserted the
    same one gives it up when it commits, instead of failing on it, and its steps' rows then
    name the committed copy (its number, migration 13, not the one given up)."""
    Recorder(db_path).close()
    first, second = open_for_writing(db_path), open_for_writing(db_path)
    # "shared" is the first's second message and the second's first: numbered apart.
    sent = {"a": ["pad-a", "shared", "own-a"], "b": ["shared", "own-b"]}
    try:
        for conn, run in ((first, "a"), (second, "b")):
            conn.execute("BEGIN TRANSACTION")
            body = f'"{run}"'
            insert_rows(
                conn, "messages", [MessageRow(hash=h, role="user", body=body) for h in sent[run]]
            )
            conn.execute(
                "INSERT INTO runs (id, task, task_path, task_sha256, provider, model, base_url, "
                "settings, seed, status, started_at, recorder_pid, recorder_host) VALUES "
                "(?, 't', 't', '0', 'p', 'm', 'u', '{}', 0, 'completed', now(), 0, 'h')",
                [run],
            )
            insert_rows(
                conn,
                "step_messages",
                [StepMessageRow(run, 0, i, h) for i, h in enumerate(sent[run])],
            )
        first.execute("COMMIT")
        second.execute("COMMIT")  # would fail on "shared" without giving it up
    finally:
        first.close()
        second.close()
    rows = query_rows(db_path, "SELECT hash, body FROM messages ORDER BY hash")
    assert rows == [
        {"hash": "own-a", "body": '"a"'},
        {"hash": "own-b", "body": '"b"'},
        {"hash": "pad-a", "body": '"a"'},
        {"hash": "shared", "body": '"a"'},  # the first to commit it
    ]
    assert [r["id"] for r in query_rows(db_path, "SELECT id FROM runs ORDER BY id")] == ["a", "b"]
    # Each row finds its message by number and key: the second's "shared" the first's copy.
    found = query_rows(
        db_path,
        "SELECT s.run_id, s.position, m.hash FROM step_message_keys s "
        "LEFT JOIN messages m ON m.seq = s.seq AND m.key = s.key ORDER BY 1, 2",
    )
    assert [(r["run_id"], r["hash"]) for r in found] == [
        ("a", "pad-a"),
        ("a", "shared"),
        ("a", "own-a"),
        ("b", "shared"),
        ("b", "own-b"),
    ]


@pytest.mark.slow
def test_runs_that_end_early_are_checked_while_the_recording_goes_on(db_path: Path) -> None:
    faulty = SimConfig(latency_ms=15, faults={"hallucinated_tool": 1.0})
    with SimServer(faulty) as server:
        done = run_cli(
            "record",
            "--task",
            str(TASKS / "chain.toml"),
            "--base-url",
            server.base_url,
            "--model",
            "sim-reasoner-1",
            "--api-key-env",
            "HOME",
            "--no-stream",
            # Three rounds of two runs: the first to end is checked while the second and
            # third round record. 60 steps a run (0.9 s of the simulator's latency alone, at
            # least) is time enough for a check of 60 steps; 120 only doubled the test.
            "--max-steps",
            "60",
            "--repeat",
            "6",
            "--concurrency",
            "2",
            "--db",
            str(db_path),
            "-f",
            "json",
        )
    assert done.returncode == 0, done.stderr
    printed = {row["id"]: row["findings"] for row in json.loads(done.stdout)}
    runs = query_rows(
        db_path,
        "SELECT r.id, r.ended_at, count(f.kind) AS findings, min(f.created_at) AS checked "
        "FROM runs r LEFT JOIN findings f ON f.run_id = r.id GROUP BY ALL ORDER BY r.ended_at",
    )
    # Every run was checked, once, and the command counted what was stored.
    assert {r["id"]: r["findings"] for r in runs} == printed
    assert all(r["findings"] > 0 for r in runs)
    # The first run to end had its findings stored before the last run ended.
    assert runs[0]["checked"] < runs[-1]["ended_at"]


def test_a_recorder_gone_while_still_dying_has_its_runs_closed_once_it_has_ended(
    db_path: Path,
) -> None:
    # A killed process closes its sockets a moment before the kernel has it ended: the
    # server, seeing its connection drop, must not take it for alive and leave its runs
    # `running` until the next server opens the store.
    dying = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    conn = open_file_for_writing(db_path)
    try:
        run = RunRecord(
            id="r", task="t", task_path="t.toml", task_sha256="0" * 64, provider="p", model="m",
            base_url="http://127.0.0.1:1/v1", settings={}, seed=0, started_at=datetime.now(),
            recorder_pid=dying.pid, recorder_host=socket.gethostname(),
        )  # fmt: skip
        insert_rows(conn, "runs", [run_row(run)])
        writer = Writer(conn.cursor(), threading.Lock(), on_end=lambda _: False)
        writer.gone(Recording(pid=dying.pid, acknowledge=lambda _: None))
        assert _statuses(conn) == {"r": "running"}  # alive when its connection dropped
        dying.kill()
        dying.wait()
        deadline = time.monotonic() + 10
        while _statuses(conn) == {"r": "running"} and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _statuses(conn) == {"r": "interrupted"}
    finally:
        dying.kill()
        conn.close()


def _statuses(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(conn.cursor().execute("SELECT id, status FROM runs").fetchall())

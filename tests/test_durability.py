"""A recording killed at any moment keeps every completed step; its run shows interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from traces.sim.config import SimConfig
from traces.sim.server import SimServer
from traces.store.database import open_for_reading

from conftest import REPO, TASKS, run_cli

# Slow as a whole, outside the fast path `pytest -m "not slow"`: processes killed mid-recording.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slow_sim() -> Iterator[SimServer]:
    """A simulator slow enough (25 ms a step) that a 300-step run is still going when killed."""
    with SimServer(SimConfig(latency_ms=25)) as server:
        yield server


def _start_recording(sim: SimServer, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "analyzer",
            "record",
            "--task",
            str(TASKS / "chain.toml"),
            "--base-url",
            sim.base_url,
            "--model",
            "sim-reasoner-1",
            "--api-key-env",
            "HOME",
            "--no-stream",
            "--db",
            str(db),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_steps(db: Path, proc: subprocess.Popen[str], wanted_bytes: int = 200_000) -> None:
    # The writer holds the file lock, so progress is read from the WAL's growth instead.
    wal = Path(f"{db}.wal")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if wal.exists() and wal.stat().st_size > wanted_bytes:
            return
        time.sleep(0.05)
    raise AssertionError("the recording never got going")


def _stored_steps(db: Path) -> list[tuple[int, int]]:
    done = run_cli(
        "sql",
        "select s.idx, (select count(*) from tool_results r where r.run_id = s.run_id "
        "and r.step_idx = s.idx) as results from steps s order by s.idx",
        "--db",
        str(db),
        "-f",
        "json",
        "--limit",
        "0",
    )
    assert done.returncode == 0, done.stderr
    return [(r["idx"], r["results"]) for r in json.loads(done.stdout)]


def test_sigkill_keeps_completed_steps_and_run_reads_interrupted(
    slow_sim: SimServer, tmp_path: Path
) -> None:
    db = tmp_path / "killed.duckdb"
    proc = _start_recording(slow_sim, db)
    _wait_for_steps(db, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    steps = _stored_steps(db)
    assert len(steps) >= 5
    assert [idx for idx, _ in steps] == list(range(len(steps)))  # no holes
    assert all(results == 1 for _, results in steps[:-1])  # every finished step's tool result
    [run] = json.loads(run_cli("runs", "--db", str(db), "-f", "json").stdout)
    assert run["status"] == "interrupted" and run["termination"] == "interrupted"
    assert run["steps"] == len(steps)

    # The next writer makes it permanent, with totals from the stored steps.
    again = run_cli("record", "--task", str(TASKS / "chain_short.toml"), "--db", str(db))
    assert again.returncode == 0, again.stderr
    row = json.loads(
        run_cli(
            "sql",
            f"select status, steps from runs where id = '{run['id']}'",
            "--db",
            str(db),
            "-f",
            "json",
        ).stdout
    )
    assert row == [{"status": "interrupted", "steps": len(steps)}]


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_sigterm_ends_the_run_as_interrupted_and_exits_130(
    slow_sim: SimServer, tmp_path: Path
) -> None:
    db = tmp_path / "terminated.duckdb"
    proc = _start_recording(slow_sim, db)
    _wait_for_steps(db, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    steps = _stored_steps(db)
    rows = json.loads(
        run_cli(
            "sql", "select id, status, termination, steps from runs", "--db", str(db), "-f", "json"
        ).stdout
    )
    [run] = rows
    # One line, naming the run it left interrupted: no traceback, from any process.
    assert stderr.splitlines() == [f"interrupted: run {run.pop('id')} left interrupted"]
    assert rows == [{"status": "interrupted", "termination": "interrupted", "steps": len(steps)}]


# A recording process without HTTP: it records one step at a time, awaiting each, and prints
# the index of every step whose commit the recorder acknowledged.
_ACKING_RECORDER = """
import asyncio, os, socket, sys
from datetime import datetime
from pathlib import Path
from traces.model import RunRecord, StepRecord
from traces.store.recorder import Recorder

async def main(recorder):
    print(f"writer {recorder.writer_pid}", flush=True)
    now = datetime.now()
    await recorder.begin_run(RunRecord(
        id="r", task="t", task_path="t.toml", task_sha256="0" * 64, provider="p", model="m",
        base_url="http://127.0.0.1:1/v1", settings={}, seed=0, started_at=now,
        recorder_pid=os.getpid(), recorder_host=socket.gethostname()))
    for i in range(100_000):
        await recorder.record_step(StepRecord(
            run_id="r", index=i, started_at=now, latency_ms=1.0, streamed=False,
            request_params={"model": "m"}, request_message_count=0, request_prefix=0,
            request_new_hashes=[], response_body="x" * 2000), {})
        print(f"acked {i}", flush=True)

asyncio.run(main(Recorder(Path(sys.argv[1]))))
"""


def _exited(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_sigkill_of_the_recording_process_loses_no_acknowledged_step(tmp_path: Path) -> None:
    db = tmp_path / "acked.duckdb"
    proc = subprocess.Popen(
        [sys.executable, "-c", _ACKING_RECORDER, str(db)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    writer = int(proc.stdout.readline().split()[1])
    acked = -1
    while acked < 200:
        line = proc.stdout.readline()
        assert line.startswith("acked "), line
        acked = int(line.split()[1])
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    # The writer sees its pipe close, commits what it received and exits promptly.
    deadline = time.monotonic() + 5
    while not _exited(writer):
        assert time.monotonic() < deadline, "the writer process outlived its parent"
        time.sleep(0.02)
    conn = open_for_reading(db)
    indices = [row[0] for row in conn.execute("SELECT idx FROM steps ORDER BY idx").fetchall()]
    conn.close()
    assert indices == list(range(len(indices)))  # committed in order, no holes
    assert len(indices) > acked  # every acknowledged step is there

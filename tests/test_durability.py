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

from conftest import REPO, TASKS, run_cli


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
            "analyzer.cli",
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
    assert "Traceback" not in stderr
    steps = _stored_steps(db)
    rows = json.loads(
        run_cli(
            "sql", "select status, termination, steps from runs", "--db", str(db), "-f", "json"
        ).stdout
    )
    assert rows == [{"status": "interrupted", "termination": "interrupted", "steps": len(steps)}]

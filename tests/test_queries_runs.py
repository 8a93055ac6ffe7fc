"""`traces runs` listings: filters and the limit applied in the query, counts that match."""

from __future__ import annotations

import socket
from pathlib import Path

import duckdb

from analyzer.queries import count_runs, list_runs
from traces.store.database import open_for_writing

from conftest import run_cli

DEAD_PID = 2**22 + 12345  # above Linux's pid_max default: never a live process


def _store(path: Path) -> None:
    """Six runs, newest last: four completed (one with two findings), one stored as
    interrupted, and one stored as running whose recorder on this host is gone."""
    conn = open_for_writing(path)
    runs = [
        ("r1", "completed", 1),
        ("r2", "completed", 2),
        ("r3", "interrupted", 3),
        ("r4", "completed", 4),
        ("r5", "running", 5),
        ("r6", "completed", 6),
    ]
    for run_id, status, minute in runs:
        conn.execute(
            "INSERT INTO runs (id, task, task_path, task_sha256, provider, model, base_url,"
            " settings, seed, status, termination, started_at, recorder_pid, recorder_host,"
            " origin) VALUES (?, 't', 'p', 'h', 'sim', 'm', 'u', '{}', 1, ?, ?,"
            " TIMESTAMP '2026-12-05 10:00' + to_minutes(?), ?, ?, 'recorded')",
            [
                run_id,
                status,
                None if status == "running" else status,
                minute,
                DEAD_PID,
                socket.gethostname(),
            ],
        )
    for n in range(2):
        conn.execute(
            "INSERT INTO findings (run_id, step_idx, kind, layer, severity, evidence, created_at)"
            " VALUES ('r4', ?, 'k', 'provider', 'warning', '{}', now())",
            [n],
        )
    conn.close()


def test_limits_and_status_filters_are_exact(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    _store(db)
    with duckdb.connect(str(db), read_only=True) as conn:
        newest = list_runs(conn, limit=3)
        assert [r["id"] for r in newest] == ["r6", "r5", "r4"]
        assert newest[1]["status"] == "interrupted"  # its recorder is gone
        assert newest[2]["findings"] == 2
        assert count_runs(conn) == 6
        interrupted = list_runs(conn, status="interrupted", limit=5)
        assert [r["id"] for r in interrupted] == ["r5", "r3"]
        assert count_runs(conn, status="interrupted") == 2
        assert list_runs(conn, status="running") == [] and count_runs(conn, status="running") == 0
        assert [r["id"] for r in list_runs(conn, status="completed", limit=2)] == ["r6", "r4"]
        assert count_runs(conn, status="completed") == 4
        assert count_runs(conn, provider="other") == 0


def test_the_command_says_how_many_it_left_out(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    _store(db)
    done = run_cli("runs", "--db", str(db), "--limit", "2", "--status", "completed")
    assert done.returncode == 0, done.stderr
    assert "showing 2 of 4 runs" in done.stderr

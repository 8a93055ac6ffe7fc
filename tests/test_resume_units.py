"""Resuming, piece by piece: who may claim a run, which worlds can be restored, which runs
may be resumed; on a real store holding one recorded run."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from traces.errors import TracesError
from traces.resume.recorded import recorded_task
from traces.resume.restore import restore
from traces.resume.resuming import check_resumable
from traces.resume.stored import RunHistory, claim, load_history, open_store, stored_run
from traces.sim.server import SimServer
from traces.tools.base import SuccessResult, ToolOutcome

from conftest import query_rows
from recording import record
from resume_helpers import cut


@pytest.fixture(scope="module")
def recorded(sim: SimServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store holding one run of the short chain, recorded once for the module."""
    db = tmp_path_factory.mktemp("resume") / "t.duckdb"
    [summary] = record(db, sim.base_url, "chain_short")
    return db, summary.id


@pytest.fixture
def interrupted(recorded: tuple[Path, str], tmp_path: Path) -> tuple[Path, str]:
    """A copy of that store whose run was stopped after two steps."""
    db, run_id = tmp_path / "t.duckdb", recorded[1]
    shutil.copy(recorded[0], db)
    cut(db, run_id, steps=2)
    return db, run_id


def _history(db: Path, run_id: str) -> RunHistory:
    conn = open_store(db)
    try:
        return load_history(conn, stored_run(conn, run_id))
    finally:
        conn.close()


def test_only_one_resumption_claims_a_run(interrupted: tuple[Path, str]) -> None:
    db, run_id = interrupted
    first, second = _history(db, run_id), _history(db, run_id)
    conn = open_store(db)
    try:
        assert claim(conn, first) == 1
        # The second read the run as it was before the first took it up: it is no longer.
        assert claim(conn, second) is None
    finally:
        conn.close()
    [row] = query_rows(db, "SELECT status, resumptions, recorder_pid FROM runs")
    assert row["status"] == "running" and row["resumptions"] == 1


def test_a_run_whose_recorder_died_reads_interrupted_and_its_history_is_whole(
    interrupted: tuple[Path, str],
) -> None:
    db, run_id = interrupted
    history = _history(db, run_id)
    assert history.run.status == "interrupted"
    assert [s.index for s in history.steps] == [0, 1]
    assert sorted(history.calls) == sorted(history.results) == [0, 1]
    assert len(history.last_request) == history.steps[-1].request_message_count == 4
    assert history.last_reply is not None and history.last_reply["role"] == "assistant"


class _Clock:
    """A world that answers with the time: the same calls never return the same again."""

    replayable = False

    def tool_specs(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"name": "open_box", "parameters": {}}}]

    def prompt_variables(self) -> dict[str, str]:
        return {"start_box": "box-000000", "length": "5"}

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        return ToolOutcome(output=json.dumps({"now": asyncio.get_running_loop().time()}))

    def check_success(self, final_answer: str) -> SuccessResult:
        return SuccessResult(passed=False, detail="no goal")


def test_a_world_that_cannot_be_replayed_refuses_resumption(
    interrupted: tuple[Path, str],
) -> None:
    db, run_id = interrupted
    history = _history(db, run_id)
    task = recorded_task(history.run)
    with pytest.raises(TracesError) as refused:
        asyncio.run(restore(history, task, _Clock()))
    assert str(refused.value) == (
        f"run {run_id}: its tools (chain world) cannot be replayed, so the world it left "
        "cannot be restored"
    )


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"status": "completed", "termination": "completed"}, "has ended (completed, completed)"),
        (
            {"status": "failed", "termination": "provider_error"},
            "`traces record --retry-failed` records it again",
        ),
        ({"origin": "imported"}, "is an imported run"),
        ({"origin": "probe"}, "is a probe run"),
        ({"status": "running", "recorder_pid": 1}, "is still being recorded (process 1 on"),
    ],
)
def test_runs_that_cannot_be_resumed_say_why(
    interrupted: tuple[Path, str], change: dict[str, Any], fragment: str
) -> None:
    db, run_id = interrupted
    run = replace(_history(db, run_id).run, **change)
    with pytest.raises(TracesError) as refused:
        check_resumable(run)
    assert str(refused.value).startswith(f"run {run_id} ") and fragment in str(refused.value)

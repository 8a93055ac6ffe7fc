"""Helpers for tests that record runs in-process and read them back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import duckdb

from traces.client import EndpointConfig
from traces.harness import HarnessSettings
from traces.runner import RunPlan, RunSummary, record_runs
from traces.store.recorder import Recorder
from traces.tasks import load_task

TASKS = Path(__file__).resolve().parents[1] / "samples" / "tasks"


def record(
    db_path: Path,
    base_url: str,
    task: str = "chain_short",
    *,
    stream: bool = False,
    repeat: int = 1,
    concurrency: int = 1,
    seed: int = 0,
    max_steps: int | None = None,
    **settings: Any,
) -> list[RunSummary]:
    """Record runs of a sample task against `base_url` into `db_path`."""
    loaded = load_task(TASKS / f"{task}.toml")
    plan = RunPlan(
        task=loaded,
        provider="sim",
        endpoint=EndpointConfig(base_url=base_url, api_key_env=None, api_key="test-key"),
        settings=HarnessSettings(
            model="sim-reasoner-1",
            max_steps=max_steps or loaded.max_steps,
            stream=stream,
            **settings,
        ),
        repeat=repeat,
        concurrency=concurrency,
        seed=seed,
    )
    recorder = Recorder(db_path)
    try:
        return asyncio.run(record_runs(plan, recorder))
    finally:
        recorder.close()


def request_messages(
    conn: duckdb.DuckDBPyConnection, run_id: str, idx: int
) -> list[dict[str, Any]]:
    """The exact messages of one stored request, rebuilt from the content-addressed table."""
    rows = conn.execute("SELECT body FROM request_messages(?, ?)", [run_id, idx]).fetchall()
    count = conn.execute(
        "SELECT request_message_count FROM steps WHERE run_id = ? AND idx = ?", [run_id, idx]
    ).fetchone()
    assert count is not None and len(rows) == count[0]
    return [json.loads(body) for (body,) in rows]

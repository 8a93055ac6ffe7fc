"""Helpers for tests that record runs in-process and read them back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
from pydantic import BaseModel, Field
from shared_work import locked

from traces.client import EndpointConfig
from traces.harness import HarnessSettings
from traces.runner import RunPlan, RunSummary, record_runs
from traces.sample_files import tasks_dir
from traces.sim.config import SimConfig
from traces.sim.server import SimServer
from traces.store.recorder import Recorder
from traces.tasks import load_task

TASKS = tasks_dir()


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


class Recording(BaseModel):
    """One simulated recording of `record_many`: a simulator config and how to drive it."""

    sim: SimConfig
    task: str = "chain_short"
    stream: bool = False
    dialect: str | None = "openai"
    timeout_s: float = 600.0
    max_steps: int | None = None
    """A cap below the task's own (a long chain cut to the steps a test needs)."""
    settings: dict[str, Any] = Field(default_factory=dict)


def record_many(db_path: Path, recordings: dict[str, Recording]) -> dict[str, RunSummary]:
    """Record one run per entry, each against its own simulator, all concurrently through one
    recorder (one writer process instead of one per run keeps the suite fast)."""

    async def one(rec: Recording, base_url: str, recorder: Recorder) -> RunSummary:
        loaded = load_task(TASKS / f"{rec.task}.toml")
        plan = RunPlan(
            task=loaded,
            provider="sim" if rec.dialect in (None, "openai") else f"sim-{rec.dialect}",
            endpoint=EndpointConfig(
                base_url=base_url, api_key_env=None, api_key="test-key", timeout_s=rec.timeout_s
            ),
            settings=HarnessSettings(
                model="sim-reasoner-1",
                max_steps=min(loaded.max_steps, rec.max_steps or loaded.max_steps),
                stream=rec.stream,
                **rec.settings,
            ),
            dialect=rec.dialect,
        )
        [summary] = await record_runs(plan, recorder)
        return summary

    async def all_of(urls: list[str], recorder: Recorder) -> list[RunSummary]:
        return list(
            await asyncio.gather(
                *(
                    one(rec, url, recorder)
                    for rec, url in zip(recordings.values(), urls, strict=True)
                )
            )
        )

    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(SimServer(rec.sim)).base_url for rec in recordings.values()]
        recorder = Recorder(db_path)
        try:
            summaries = asyncio.run(all_of(urls, recorder))
        finally:
            recorder.close()
    return dict(zip(recordings, summaries, strict=True))


def recorded_once(
    shared: Path, name: str, recordings: dict[str, Recording], dest: Path
) -> dict[str, RunSummary]:
    """`record_many(dest, recordings)`, with the recording itself made once per test run:
    the first caller (in any xdist worker) records into `shared/name` (`shared`: a folder
    every worker of the run reaches, `shared_work.session_shared`), every caller gets a copy
    of that store at `dest` to analyze and write into as its own. Modules that analyze the
    same recordings (every fault, every dialect) share them instead of each recording them
    again, a few seconds of CPU per worker."""
    store = shared / name / "t.duckdb"
    summaries = shared / name / "summaries.json"
    with locked(shared / f"{name}.lock"):
        if not summaries.is_file():
            store.parent.mkdir(parents=True, exist_ok=True)
            for left in (store, store.with_name(store.name + ".wal")):
                left.unlink(missing_ok=True)  # a caller that failed half-way left it
            recorded = record_many(store, recordings)
            summaries.write_text(
                json.dumps({key: s.model_dump(mode="json") for key, s in recorded.items()})
            )
    shutil.copyfile(store, dest)
    wal = store.with_name(store.name + ".wal")  # none once the recorder closed it, normally
    if wal.exists():
        shutil.copyfile(wal, dest.with_name(dest.name + ".wal"))
    loaded = json.loads(summaries.read_text())
    assert set(loaded) == set(recordings), "one name, one set of recordings"
    return {key: RunSummary.model_validate(value) for key, value in loaded.items()}

"""Helpers for tests that record runs in-process and read them back."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
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


def _record_shared(shared: Path, name: str, recordings: dict[str, Recording]) -> None:
    """Record `recordings` into `shared/name` unless a caller already did, under the lock
    every caller of `recorded_once` takes (a caller that failed half-way left a partial
    store: recorded again)."""
    store = shared / name / "t.duckdb"
    if (shared / name / "summaries.json").is_file():
        return
    store.parent.mkdir(parents=True, exist_ok=True)
    for left in (store, store.with_name(store.name + ".wal")):
        left.unlink(missing_ok=True)
    recorded = record_many(store, recordings)
    (shared / name / "summaries.json").write_text(
        json.dumps({key: s.model_dump(mode="json") for key, s in recorded.items()})
    )


def recorded_once(
    shared: Path, name: str, recordings: dict[str, Recording], dest: Path
) -> dict[str, RunSummary]:
    """`record_many(dest, recordings)`, with the recording itself made once per test run:
    the first caller (in any xdist worker, or `recording_in_background`'s child) records into
    `shared/name` (`shared`: a folder every worker of the run reaches,
    `shared_work.session_shared`), every caller gets a copy of that store at `dest` to analyze
    and write into as its own. Modules that analyze the same recordings (every fault, every
    dialect) share them instead of each recording them again, a few seconds of CPU per
    worker."""
    store = shared / name / "t.duckdb"
    summaries = shared / name / "summaries.json"
    with locked(shared / f"{name}.lock"):
        _record_shared(shared, name, recordings)
    shutil.copyfile(store, dest)
    wal = store.with_name(store.name + ".wal")  # none once the recorder closed it, normally
    if wal.exists():
        shutil.copyfile(wal, dest.with_name(dest.name + ".wal"))
    loaded = json.loads(summaries.read_text())
    assert set(loaded) == set(recordings), "one name, one set of recordings"
    return {key: RunSummary.model_validate(value) for key, value in loaded.items()}


@contextlib.contextmanager
def recording_in_background(shared: Path, name: str, factory: str) -> Iterator[None]:
    """Start `recorded_once`'s recording of `name` now, in a child process, while this worker
    goes on with other tests; the first worker of the run to ask starts it, the others do
    nothing. `factory` ("module:function", a module of tests/) returns the recordings, the
    same `recorded_once` is later called with. The child holds the lock `recorded_once`
    takes, so a test that needs the store before it is done waits for it instead of recording
    again; the block does not wait for the child to take it (a test reaching `recorded_once`
    first records itself, and the child then finds the store made). Without this the first
    test to need the store records it (about 30 s on a quiet machine, 85 s at a load of 15)
    while the other workers' first tests of those modules wait on the lock, idle. The
    block's end waits for the child (stopped if the session was interrupted)."""
    shared.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(shared / f"{name}.background", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        yield  # another worker started it
        return
    child = subprocess.Popen(
        [sys.executable, __file__, str(shared), name, factory],
        cwd=Path(__file__).parent,
        stdin=subprocess.DEVNULL,
    )
    try:
        yield
    except BaseException:
        child.terminate()
        raise
    finally:
        child.wait()


def _main(shared: str, name: str, factory: str) -> None:
    """The child of `recording_in_background`: the recordings `factory` returns, recorded
    under the lock into `shared/name`."""
    module, function = factory.split(":")
    recordings = getattr(importlib.import_module(module), function)()
    with locked(Path(shared) / f"{name}.lock"):
        _record_shared(Path(shared), name, recordings)


if __name__ == "__main__":
    _main(*sys.argv[1:])

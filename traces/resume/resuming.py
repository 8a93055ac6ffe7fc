"""`traces record --resume`: continue interrupted runs from their last committed step.

For each run: read its history from the store, rebuild its task, endpoint and settings as
recorded, restore its tool world by replay and its next request from the stored messages
(`restore`), then claim it (status `running` again, under this process) and let the harness
go on from there, through one recorder, at most `concurrency` runs at a time. A run stays
one run: its new steps continue the numbering, the first carries the resumption's number,
and it ends as any run ends.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb

from traces.client import EndpointClient, EndpointConfig
from traces.errors import DatabaseError, TracesError
from traces.harness import Agent, HarnessSettings, ResumePoint
from traces.resume.recorded import (
    NotReproducible,
    recorded_sample,
    recorded_settings,
    recorded_target,
    recorded_task,
    recorded_timeout,
    refuse,
)
from traces.resume.restore import restore
from traces.resume.serve import serving_each
from traces.resume.stored import (
    ORIGIN_NOUNS,
    RunHistory,
    StoredRun,
    claim,
    interrupted_runs,
    load_history,
    open_store,
    still_recording,
    stored_run,
)
from traces.runner import InterruptedCallback, RunSummary, drive_run
from traces.running import RunProgress, recording
from traces.store.database import Store
from traces.store.lake import error_line, transaction
from traces.store.recorder import Recorder
from traces.targets import Target
from traces.tasks import ToolsSpec, build_environment
from traces.tools.base import ToolEnvironment

Refused = Callable[[str], None]
"""Told the one line of each run that is left out (when every interrupted run is taken)."""


@dataclass(frozen=True)
class _Prepared:
    """One run ready to go on: everything but the connection to its endpoint."""

    history: RunHistory
    target: Target
    timeout: float
    settings: HarnessSettings
    environment: ToolEnvironment
    prompts: tuple[str, str]
    point: ResumePoint


def check_resumable(run: StoredRun) -> None:
    """Refuse, in one line, a run that cannot be resumed: not recorded here, ended, or still
    being recorded."""
    if run.origin != "recorded":
        raise NotReproducible(
            f"run {run.id} is {ORIGIN_NOUNS.get(run.origin, 'a ' + run.origin)} run: "
            "only runs `traces record` recorded can be resumed (they have a task and settings)"
        )
    if run.status == "running" and still_recording(run):
        raise NotReproducible(
            f"run {run.id} is still being recorded (process {run.recorder_pid} on "
            f"{run.recorder_host})"
        )
    if run.status != "interrupted":
        hint = (
            "; `traces record --retry-failed` records it again"
            if run.termination == "provider_error"
            else ""
        )
        raise NotReproducible(
            f"run {run.id} has ended ({run.status}, {run.termination}): only an interrupted "
            f"run can be resumed{hint}"
        )


def resume_runs(
    db_path: Store,
    run_ids: list[str],
    *,
    providers_file: Path | None,
    concurrency: int,
    progress: RunProgress,
    refused: Refused,
) -> list[RunSummary]:
    """Resume the runs `run_ids` (whole ids), or every interrupted run of the store when
    none is given; their summaries in order.

    Named runs that cannot be resumed raise their one-line refusal; when every interrupted
    run is taken, those that cannot be are told to `refused` and the others go on (and
    when none can, that is the error). SIGTERM and Ctrl-C end the runs under way as
    interrupted again, as `record` does.
    """
    conn = open_store(db_path)
    try:
        if run_ids:
            runs = [stored_run(conn, run_id) for run_id in run_ids]
            for run in runs:
                check_resumable(run)
        else:
            runs = interrupted_runs(conn)
            if not runs:
                raise TracesError(f"{db_path}: no interrupted run to resume")
        histories = [load_history(conn, run) for run in runs]
    finally:
        conn.close()
    with tempfile.TemporaryDirectory(prefix="agent-traces-resume-") as sandboxes:
        prepared = asyncio.run(_prepare_all(histories, providers_file, Path(sandboxes)))
        ready: list[_Prepared] = []
        for item in prepared:
            if isinstance(item, _Prepared):
                ready.append(item)
            elif run_ids:
                raise item
            else:
                refused(str(item))
        if not ready:
            raise TracesError(f"{db_path}: no interrupted run can be resumed (see above)")
        with serving_each([(p.target, p.timeout) for p in ready]) as endpoints:
            pairs = list(zip(ready, endpoints, strict=True))
            claimed = _claim_all(db_path, pairs, refused, strict=bool(run_ids))
            if not claimed:
                raise TracesError(f"{db_path}: no interrupted run can be resumed (see above)")
            return _run_all(db_path, claimed, concurrency, progress)


async def _prepare_all(
    histories: list[RunHistory], providers_file: Path | None, sandboxes: Path
) -> list[_Prepared | NotReproducible]:
    results: list[_Prepared | NotReproducible] = []
    for history in histories:
        try:
            results.append(await _prepare(history, providers_file, sandboxes))
        except NotReproducible as exc:
            results.append(exc)
        except TracesError as exc:  # its task's world cannot be built (a corpus gone...)
            results.append(refuse(history.run, str(exc)))
    return results


async def _prepare(history: RunHistory, providers_file: Path | None, sandboxes: Path) -> _Prepared:
    run = history.run
    target = recorded_target(run, providers_file)
    settings = recorded_settings(run, target)
    task = recorded_task(run)
    sample = recorded_sample(run, task)
    if isinstance(task.environment, ToolsSpec):
        raise refuse(
            run,
            "its tools (MCP servers, Python functions) cannot be replayed, so the world it "
            "left cannot be restored; record it again",
        )
    sandbox = sandboxes / run.id
    sandbox.mkdir()
    environment = build_environment(task, seed=run.seed, sandbox_dir=sandbox, sample=sample)
    prompts, point = await restore(history, task, environment)
    return _Prepared(
        history=history,
        target=target,
        timeout=recorded_timeout(run),
        settings=settings,
        environment=environment,
        prompts=prompts,
        point=point,
    )


def _claim_all(
    db_path: Store,
    ready: list[tuple[_Prepared, EndpointConfig]],
    refused: Refused,
    *,
    strict: bool,
) -> list[tuple[_Prepared, EndpointConfig]]:
    """Claim each run (see `stored.claim`), numbering its resumption; a run that changed
    since it was read is left to whoever changed it. All in one transaction: when a named
    run (`strict`) cannot be claimed, none is."""
    claimed: list[tuple[_Prepared, EndpointConfig]] = []
    problems: list[str] = []

    def claim_all() -> None:
        claimed.clear()  # on a lake, begun again when another writer's commit conflicted
        problems.clear()
        for prepared, endpoint in ready:
            number = claim(conn, prepared.history)
            if number is None:
                problem = refuse(
                    prepared.history.run,
                    "changed while it was being prepared (resumed by another process?)",
                )
                if strict:
                    raise problem
                problems.append(str(problem))
                continue
            point = replace(prepared.point, number=number)
            claimed.append((replace(prepared, point=point), endpoint))

    conn = open_store(db_path)
    try:
        transaction(conn, claim_all)
    except duckdb.Error as exc:
        raise DatabaseError(f"{db_path}: cannot claim the runs: {error_line(exc)}") from None
    finally:
        conn.close()  # before COMMIT, closing rolls the claims back
    for problem in problems:
        refused(problem)
    return claimed


def _run_all(
    db_path: Store,
    chosen: list[tuple[_Prepared, EndpointConfig]],
    concurrency: int,
    progress: RunProgress,
) -> list[RunSummary]:
    async def everything(
        recorder: Recorder, on_interrupted: InterruptedCallback
    ) -> list[RunSummary]:
        labels: dict[str, int] = {}
        for prepared, _ in chosen:
            labels[prepared.target.provider] = labels.get(prepared.target.provider, 0) + 1
        for label, count in labels.items():
            progress.started(label, count)
        limit = asyncio.Semaphore(max(1, concurrency))

        async def one(prepared: _Prepared, endpoint: EndpointConfig) -> RunSummary:
            async with limit:
                summary = await _resume_one(prepared, endpoint, recorder, on_interrupted)
            progress.done(prepared.target.provider, summary.id, summary.outcome)
            return summary

        return list(await asyncio.gather(*(one(p, e) for p, e in chosen)))

    return recording(db_path, everything)


async def _resume_one(
    prepared: _Prepared,
    endpoint: EndpointConfig,
    recorder: Recorder,
    on_interrupted: InterruptedCallback,
) -> RunSummary:
    run = prepared.history.run
    client = EndpointClient(endpoint)
    try:
        agent = Agent(
            run_id=run.id,
            client=client,
            recorder=recorder,
            environment=prepared.environment,
            system_prompt=prepared.prompts[0],
            user_prompt=prepared.prompts[1],
            settings=prepared.settings,
        )
        outcome = await drive_run(
            agent, client, recorder, agent.resume(prepared.point), on_interrupted
        )
    finally:
        await client.close()
    return RunSummary(id=run.id, task=run.task, seed=run.seed, outcome=outcome)

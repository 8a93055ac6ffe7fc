"""Driving many runs of one task against one endpoint, with bounded concurrency.

Each run gets its own world (seed), its own sandbox directory and its own conversation; they
share one recorder (one writer process); each has its own endpoint client.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from traces.client import EndpointClient, EndpointConfig, resolve_api_key
from traces.datasets import Sample
from traces.environments import open_environment
from traces.harness import Agent, HarnessSettings
from traces.model import RunOutcome, RunRecord, RunStatus, Termination, canonical_json, new_run_id
from traces.redaction import redact_url
from traces.sim.config import SimConfig
from traces.store.recorder import Recorder
from traces.tasks import Task, render_prompts
from traces.tools.base import ToolEnvironment

ProgressCallback = Callable[[str, RunOutcome], None]
"""Called with (run id, outcome) as each run ends."""
InterruptedCallback = Callable[[str], None]
"""Called with the id of each run a cancellation (Ctrl-C, SIGTERM) ended as interrupted."""


class RunPlan(BaseModel):
    """What to record: one task, one endpoint, N runs."""

    task: Task
    provider: str
    endpoint: EndpointConfig
    settings: HarnessSettings
    repeat: int = 1
    concurrency: int = 1
    seed: int = 0
    dialect: str | None = None
    profile: str | None = Field(
        default=None, description="The provider profile `endpoint` came from, if any."
    )
    sim: SimConfig | None = Field(
        default=None, description="The embedded simulator `endpoint` serves, if it is one."
    )
    retry_of: str | None = Field(
        default=None, description="The failed run these runs record again (--retry-failed)."
    )
    samples: tuple[Sample, ...] = Field(
        default=(),
        description="For a task with a dataset, the samples to answer: `repeat` runs of each "
        "(empty: `repeat` runs of a task without one).",
    )

    @property
    def runs(self) -> int:
        """How many runs the plan records."""
        return self.repeat * max(1, len(self.samples))


class RunSummary(BaseModel):
    """One recorded run as the `record` command reports it."""

    id: str
    task: str
    seed: int
    outcome: RunOutcome
    retry_of: str | None = None
    sample: str | None = None


def never_answered(outcome: RunOutcome) -> bool:
    """Whether a run ended without a single successful model response.

    The harness ends a run at the first request that fails for good (after its retries), so
    that is a run whose first request failed: any HTTP error (a 401, a context overflow's
    400, a 5xx), a timeout, a dropped connection, a response without a message. A model that
    answered badly (no answer, a malformed call) did respond.
    """
    return outcome.steps <= 1 and outcome.termination in (
        Termination.PROVIDER_ERROR,
        Termination.CONTEXT_OVERFLOW,
    )


async def record_runs(
    plan: RunPlan,
    recorder: Recorder,
    on_done: ProgressCallback | None = None,
    *,
    limit: asyncio.Semaphore | None = None,
    on_interrupted: InterruptedCallback | None = None,
    on_step: Callable[[], None] | None = None,
) -> list[RunSummary]:
    """Record `plan.runs` runs, at most `plan.concurrency` at a time; return them in order:
    `plan.repeat` of the task, or of each of `plan.samples` (the same seeds for every sample).

    `limit` replaces the plan's own bound with one shared by several plans (one provider's
    runs of a whole suite, say), so a host never sees more than that many at once. When the
    recording is cancelled, every run under way is ended as interrupted (and named to
    `on_interrupted`) before the cancellation goes on. `on_step()` is called each time a
    step of any of the runs is committed.
    """
    resolve_api_key(plan.endpoint)  # a missing key fails once, before any run starts
    limit = limit or asyncio.Semaphore(max(1, plan.concurrency))
    with tempfile.TemporaryDirectory(prefix="agent-traces-") as sandboxes:

        async def one(i: int, sample: Sample | None) -> RunSummary:
            async with limit:
                # One client (one connection pool) per run: a pool shared by 64 runs probes
                # every idle connection on each request, which cost more CPU than recording.
                client = EndpointClient(plan.endpoint)
                try:
                    summary = await _record_one(
                        plan,
                        client,
                        recorder,
                        _Run(plan.seed + i, sample),
                        sandboxes,
                        on_interrupted,
                        on_step,
                    )
                finally:
                    await client.close()
            if on_done is not None:
                on_done(summary.id, summary.outcome)
            return summary

        samples: tuple[Sample | None, ...] = plan.samples or (None,)
        runs = [one(i, sample) for sample in samples for i in range(plan.repeat)]
        return list(await asyncio.gather(*runs))


@dataclass(frozen=True)
class _Run:
    """What tells one run of a plan from the others."""

    seed: int
    sample: Sample | None


async def _record_one(
    plan: RunPlan,
    client: EndpointClient,
    recorder: Recorder,
    run: _Run,
    sandboxes: str,
    on_interrupted: InterruptedCallback | None,
    on_step: Callable[[], None] | None = None,
) -> RunSummary:
    run_id = new_run_id()
    sandbox = Path(sandboxes) / run_id
    sandbox.mkdir()
    async with open_environment(
        plan.task, seed=run.seed, sandbox_dir=sandbox, sample=run.sample
    ) as environment:
        return await _record_in(
            plan, client, recorder, run, run_id, environment, on_interrupted, on_step
        )


async def _record_in(
    plan: RunPlan,
    client: EndpointClient,
    recorder: Recorder,
    run: _Run,
    run_id: str,
    environment: ToolEnvironment,
    on_interrupted: InterruptedCallback | None,
    on_step: Callable[[], None] | None,
) -> RunSummary:
    seed = run.seed
    system_prompt, user_prompt = render_prompts(plan.task, environment)
    settings = plan.settings.model_copy()
    if settings.seed is None:
        settings.seed = seed
    agent = Agent(
        run_id=run_id,
        client=client,
        recorder=recorder,
        environment=environment,
        system_prompt=system_prompt,
        user_prompt=user_prompt,
        settings=settings,
    )
    record = RunRecord(
        id=run_id,
        task=plan.task.name,
        task_path=str(plan.task.source_path),
        task_sha256=plan.task.sha256,
        provider=plan.provider,
        model=settings.model,
        base_url=redact_url(plan.endpoint.base_url),
        settings=_settings_json(plan, settings),
        seed=seed,
        started_at=datetime.now(UTC).replace(tzinfo=None),
        recorder_pid=recorder.pid,
        recorder_host=recorder.host,
        retry_of=plan.retry_of,
        sample=run.sample.id if run.sample is not None else None,
    )

    async def work() -> RunOutcome:
        await recorder.begin_run(record)
        return await agent.run()

    recorder.follow_steps(run_id, on_step)
    try:
        outcome = await drive_run(agent, client, recorder, work(), on_interrupted)
    finally:
        recorder.follow_steps(run_id, None)
    return RunSummary(
        id=run_id,
        task=plan.task.name,
        seed=seed,
        outcome=outcome,
        retry_of=plan.retry_of,
        sample=record.sample,
    )


async def drive_run(
    agent: Agent,
    client: EndpointClient,
    recorder: Recorder,
    work: Coroutine[Any, Any, RunOutcome],
    on_interrupted: InterruptedCallback | None,
) -> RunOutcome:
    """Await `work` (a run starting, or resuming) and end the run with its outcome, whatever
    happens: a cancellation ends it as interrupted (durably, and named to `on_interrupted`)
    before it goes on, a harness bug as a `client_error` while the other runs go on."""
    run_id = agent.run_id
    try:
        outcome = await work
    except asyncio.CancelledError:
        outcome = agent.outcome(
            RunStatus.INTERRUPTED, Termination.INTERRUPTED, error="recording was interrupted"
        )
        if on_interrupted is not None:
            on_interrupted(run_id)
        await asyncio.shield(recorder.end_run(run_id, outcome))
        raise
    except Exception as exc:  # a harness bug: end this run visibly, let the others go on
        error = client.redactor.text(f"{type(exc).__name__}: {exc}", tokens=True)
        outcome = agent.outcome(RunStatus.FAILED, Termination.CLIENT_ERROR, error=error)
    await recorder.end_run(run_id, outcome)
    return outcome


def _settings_json(plan: RunPlan, settings: HarnessSettings) -> dict[str, Any]:
    data = settings.model_dump(exclude={"extra_body"})
    data["extra_body_keys"] = sorted(settings.extra_body)
    data["repeat"] = plan.repeat
    data["concurrency"] = plan.concurrency
    data["api_key_env"] = plan.endpoint.api_key_env
    data["dialect"] = plan.dialect
    data["endpoint"] = endpoint_settings(plan, settings)
    # `task_path` is the path as given, maybe relative to where `record` ran: a resumption
    # or a retry started elsewhere finds the file by this one.
    data["task_file"] = str(plan.task.source_path.resolve())
    return data


def endpoint_settings(plan: RunPlan, settings: HarnessSettings) -> dict[str, Any]:
    """What `traces record --resume` and `--retry-failed` need to reach the same endpoint the
    same way again, stored as `settings.endpoint`: where it came from (the embedded simulator
    with its whole configuration, a provider profile by name, or a URL given as is), the
    request deadline, whether the stored `base_url` is the URL itself (credentials and query
    are stripped before storing), and fingerprints of what is not stored: a digest of the
    `extra_body` values and the names of the extra headers (their values may be secrets)."""
    url = plan.endpoint.base_url
    return {
        "kind": "simulator" if plan.sim else "profile" if plan.profile else "custom",
        "profile": plan.profile,
        "sim": plan.sim.model_dump() if plan.sim else None,
        "timeout_s": plan.endpoint.timeout_s,
        "base_url_exact": redact_url(url) == url,
        "extra_body_sha256": extra_body_digest(settings.extra_body),
        "extra_headers": sorted(plan.endpoint.extra_headers),
    }


def extra_body_digest(extra_body: dict[str, Any]) -> str:
    """A digest of `extra_body`'s keys and values, to tell a profile edited since a run."""
    return hashlib.sha256(canonical_json(extra_body).encode()).hexdigest()

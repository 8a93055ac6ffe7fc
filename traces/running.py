"""Running targets: starting their simulators, checking they answer, recording plans of runs.

`record` runs one target, `compare` several at once (each with its own concurrency bound),
`probe` sends probes instead of runs; all of them get their endpoints here, and the first two
record here. The commands only parse options and show progress (through `RunProgress`).
Every target runs the same tasks with the same seeds, so its requests match the other
targets' request for request until their answers differ: that is what lets tool_call_f1
pair them. All targets run at the same time (a slow host does not hold up a fast one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

from traces.client import EndpointClient, EndpointConfig
from traces.errors import EndpointError, Interrupted
from traces.harness import HarnessSettings
from traces.interrupts import run_cancelling_on_signal
from traces.model import RunOutcome
from traces.runner import (
    InterruptedCallback,
    RunPlan,
    RunSummary,
    never_answered,
    record_runs,
)
from traces.sim.server import SimServer
from traces.store.database import Store
from traces.store.recorder import Recorder
from traces.suites import SuiteTask
from traces.targets import Target

_T = TypeVar("_T")

Recorded = dict[str, list[RunSummary]]
"""Target label -> its runs, in plan order."""


class RunProgress(Protocol):
    """What a command shows while targets record."""

    def started(self, label: str, runs: int) -> None:
        """A target's `runs` runs are about to start."""

    def done(self, label: str, run_id: str, outcome: RunOutcome) -> None:
        """One run of the target `label` ended."""

    def stepped(self, label: str) -> None:
        """One step of a run of the target `label` was committed."""


async def check_reachable(endpoint: EndpointConfig) -> None:
    """Raise a one-line EndpointError when the endpoint cannot be reached at all."""
    client = EndpointClient(endpoint)
    try:
        await client.check_reachable()
    finally:
        await client.close()


@contextlib.contextmanager
def serving(targets: list[Target], timeout: float) -> Iterator[list[EndpointConfig]]:
    """Each target's endpoint, in order: a remote one once it is known to answer (before the
    database is touched: an unreachable endpoint or a missing key is bad input), the
    embedded simulator's started for as long as the block runs."""
    for target in targets:
        if target.endpoint is not None:
            asyncio.run(check_reachable(target.endpoint))
    with contextlib.ExitStack() as stack:
        endpoints: list[EndpointConfig] = []
        for target in targets:
            if target.endpoint is not None:
                endpoints.append(target.endpoint)
                continue
            server = stack.enter_context(SimServer(target.sim))
            # The simulator needs no key; a placeholder keeps the SDK happy, never stored.
            endpoints.append(
                EndpointConfig(
                    base_url=server.base_url, api_key_env=None, api_key="sim", timeout_s=timeout
                )
            )
        yield endpoints


def target_plans(
    target: Target,
    endpoint: EndpointConfig,
    tasks: list[SuiteTask],
    *,
    concurrency: int,
    stream: bool,
    seed: int,
    temperature: float | None = None,
) -> list[RunPlan]:
    """One plan per task for `target`, every task starting at the same `seed`."""
    return [
        RunPlan(
            task=entry.task,
            provider=target.provider,
            endpoint=endpoint,
            settings=HarnessSettings(
                model=target.model,
                max_steps=entry.max_steps,
                stream=stream,
                temperature=temperature,
                replay=target.replay,
                extra_body=target.extra_body,
            ),
            repeat=entry.repeats,
            samples=entry.chosen_samples,
            concurrency=concurrency,
            seed=seed,
            dialect=target.dialect,
            profile=target.profile,
            sim=target.sim,
        )
        for entry in tasks
    ]


def record_targets(
    plans: dict[str, list[RunPlan]], db_path: Store, concurrency: int, progress: RunProgress
) -> Recorded:
    """Record every target's plans into `db_path`, all targets at once and at most
    `concurrency` runs of one target in flight; their summaries by target label.

    SIGTERM and Ctrl-C end every run under way as `interrupted`, durably; the `Interrupted`
    raised then names them.
    """

    async def everything(recorder: Recorder, on_interrupted: InterruptedCallback) -> Recorded:
        async def one_target(label: str, target_plans: list[RunPlan]) -> list[RunSummary]:
            progress.started(label, sum(p.runs for p in target_plans))

            def done(run_id: str, outcome: RunOutcome) -> None:
                progress.done(label, run_id, outcome)

            def stepped() -> None:
                progress.stepped(label)

            bound = asyncio.Semaphore(concurrency)  # one per target, shared by all its tasks
            batches = await asyncio.gather(
                *(
                    record_runs(
                        plan,
                        recorder,
                        done,
                        limit=bound,
                        on_interrupted=on_interrupted,
                        on_step=stepped,
                    )
                    for plan in target_plans
                )
            )
            return [summary for batch in batches for summary in batch]

        labels = list(plans)
        results = await asyncio.gather(*(one_target(label, plans[label]) for label in labels))
        return dict(zip(labels, results, strict=True))

    return recording(db_path, everything)


def recording(
    db_path: Store, work: Callable[[Recorder, InterruptedCallback], Coroutine[Any, Any, _T]]
) -> _T:
    """Run `work(recorder, on_interrupted)` with a recorder on `db_path`, until it is done or
    SIGTERM or Ctrl-C cancels it; `work` names to `on_interrupted` each run the cancellation
    left interrupted, and the `Interrupted` raised then names them all."""
    interrupted: list[str] = []
    recorder = Recorder(db_path)
    try:
        return run_cancelling_on_signal(work(recorder, interrupted.append))
    except KeyboardInterrupt:
        if not interrupted:
            raise
        raise Interrupted(left_interrupted(interrupted)) from None
    finally:
        recorder.close()


def left_interrupted(run_ids: list[str]) -> str:
    """The line a recording stopped by Ctrl-C ends with: which runs it left interrupted."""
    noun = "run" if len(run_ids) == 1 else "runs"
    return f"interrupted: {noun} {', '.join(run_ids)} left interrupted"


def dead_endpoint(summaries: list[RunSummary]) -> EndpointError | None:
    """The exit-3 error when not one run got a single successful model response, else None.

    Some runs failing is what recording measures: they are stored and the command succeeds.
    All failing on their first request is an endpoint that does not work: one line says so
    and names the runs stored as failed, to look at with `traces show`.
    """
    if not summaries or not all(never_answered(s.outcome) for s in summaries):
        return None
    ids = [s.id for s in summaries]
    stored = ids[0] if len(ids) == 1 else f"{len(ids)} runs: {ids[0]} … {ids[-1]}"
    return EndpointError(
        f"endpoint failed on the first request of every run (stored as failed: {stored}): "
        f"{summaries[0].outcome.error}"
    )


def dead_targets(recorded: Recorded) -> dict[str, list[RunSummary]]:
    """The targets none of whose runs got a single successful model response."""
    return {
        label: summaries
        for label, summaries in recorded.items()
        if summaries and all(never_answered(s.outcome) for s in summaries)
    }

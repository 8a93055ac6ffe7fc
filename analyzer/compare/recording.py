"""Recording a suite against several targets at once, each with its own concurrency bound.

Every target runs the same tasks with the same seeds, so its requests match the other
targets' request for request until their answers differ: that is what lets tool_call_f1 pair
them. All targets run at the same time (a slow host does not hold up a fast one); within one
target, at most `concurrency` runs are in flight across all of the suite's tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from analyzer.progress import stderr_progress
from analyzer.targets import Target
from traces.client import EndpointClient, EndpointConfig
from traces.harness import HarnessSettings
from traces.interrupts import run_cancelling_on_signal
from traces.model import RunOutcome
from traces.runner import RunPlan, RunSummary, record_runs
from traces.sim.server import SimServer
from traces.store.recorder import Recorder
from traces.suites import Suite

Recorded = dict[str, list[RunSummary]]
"""Target label -> its runs, in suite order."""


async def check_reachable(endpoint: EndpointConfig) -> None:
    """Raise a one-line EndpointError when the endpoint cannot be reached at all."""
    client = EndpointClient(endpoint)
    try:
        await client.check_reachable()
    finally:
        await client.close()


def record_suite(
    suite: Suite,
    targets: list[Target],
    db_path: Path,
    *,
    repeat: int | None,
    concurrency: int,
    stream: bool,
    seed: int,
    timeout: float,
) -> Recorded:
    """Record every task of `suite` against every target into `db_path`; progress on stderr.

    Unreachable endpoints are reported before the database is touched.
    """
    for target in targets:
        if target.endpoint is not None:
            asyncio.run(check_reachable(target.endpoint))
    with contextlib.ExitStack() as stack:
        endpoints: dict[str, EndpointConfig] = {}
        for target in targets:
            if target.endpoint is not None:
                endpoints[target.provider] = target.endpoint
            else:
                server = stack.enter_context(SimServer(target.sim))
                # The simulator needs no key; a placeholder keeps the SDK happy.
                endpoints[target.provider] = EndpointConfig(
                    base_url=server.base_url, api_key_env=None, api_key="sim", timeout_s=timeout
                )
        plans = {
            target.provider: [
                RunPlan(
                    task=entry.task,
                    provider=target.provider,
                    endpoint=endpoints[target.provider],
                    settings=HarnessSettings(
                        model=target.model,
                        max_steps=entry.max_steps,
                        stream=stream,
                        replay=target.replay,
                        extra_body=target.extra_body,
                    ),
                    repeat=repeat or entry.repeats,
                    concurrency=concurrency,
                    seed=seed,
                    dialect=target.dialect,
                )
                for entry in suite.tasks
            ]
            for target in targets
        }
        recorder = Recorder(db_path)
        try:
            return _with_progress(plans, recorder, concurrency)
        finally:
            recorder.close()


def _with_progress(plans: dict[str, list[RunPlan]], recorder: Recorder, limit: int) -> Recorded:
    with stderr_progress(notes=True) as progress:

        async def one_target(label: str, target_plans: list[RunPlan]) -> list[RunSummary]:
            bar = progress.add_task(label, total=sum(p.repeat for p in target_plans), last="")

            def done(run_id: str, outcome: RunOutcome) -> None:
                last = f"{outcome.termination.value} ({outcome.steps} steps)"
                progress.update(bar, advance=1, last=last)

            # One bound per target, shared by all of its tasks.
            bound = asyncio.Semaphore(limit)
            batches = await asyncio.gather(
                *(record_runs(plan, recorder, done, limit=bound) for plan in target_plans)
            )
            return [summary for batch in batches for summary in batch]

        async def everything() -> Recorded:
            labels = list(plans)
            results = await asyncio.gather(*(one_target(label, plans[label]) for label in labels))
            return dict(zip(labels, results, strict=True))

        # SIGTERM and Ctrl-C end every run under way as `interrupted`, durably.
        return run_cancelling_on_signal(everything())

"""`traces record --retry-failed`: record again the runs that ended with a provider error.

As Inspect's `eval-retry` does: the same task, endpoint, settings and seed, as a new run
linked to the failed one (`runs.retry_of`), which is kept for comparison. A run some run
retries already is left alone unless `again` is asked; a retry that fails in turn is a
failed run with no retry yet, so the next `--retry-failed` takes it.
"""

from __future__ import annotations

from pathlib import Path

from traces.datasets import Sample
from traces.errors import TracesError
from traces.harness import HarnessSettings
from traces.resume.recorded import (
    NotReproducible,
    recorded_sample,
    recorded_settings,
    recorded_target,
    recorded_task,
    recorded_timeout,
)
from traces.resume.resuming import Refused
from traces.resume.serve import serving_each
from traces.resume.stored import (
    ORIGIN_NOUNS,
    StoredRun,
    failed_runs,
    open_store,
    retries_of,
    stored_run,
)
from traces.runner import RunPlan, RunSummary
from traces.running import RunProgress, record_targets
from traces.store.database import Store
from traces.targets import Target
from traces.tasks import Task

_RETRIED = "provider_error"
"""The termination a retry is for: the endpoint failed, after the harness's own retries."""


def retry_failed(
    db_path: Store,
    run_ids: list[str],
    *,
    again: bool,
    providers_file: Path | None,
    concurrency: int,
    progress: RunProgress,
    refused: Refused,
) -> list[RunSummary]:
    """Record again the runs `run_ids` (whole ids), or every run of the store that ended
    with a provider error when none is given; the new runs' summaries, in order.

    Named runs that cannot be retried raise their one-line refusal; when all are taken,
    those that cannot be are told to `refused` and the others go on.
    """
    conn = open_store(db_path)
    try:
        if run_ids:
            runs = [stored_run(conn, run_id) for run_id in run_ids]
            for run in runs:
                _check_retryable(run, retries_of(conn, run.id), again=again)
        else:
            runs = failed_runs(conn, again=again)
            if not runs:
                left = "" if again else " that no run retries yet (--again retries those too)"
                raise TracesError(f"{db_path}: no run ended with a provider error{left}")
    finally:
        conn.close()
    specs: list[tuple[StoredRun, Target, HarnessSettings, Task, Sample | None]] = []
    for run in runs:
        try:
            target = recorded_target(run, providers_file)
            task = recorded_task(run)
            sample = recorded_sample(run, task)
            specs.append((run, target, recorded_settings(run, target), task, sample))
        except NotReproducible as exc:
            if run_ids:
                raise
            refused(str(exc))
    if not specs:
        raise TracesError(f"{db_path}: no failed run can be retried (see above)")
    with serving_each([(spec[1], recorded_timeout(spec[0])) for spec in specs]) as ends:
        plans: dict[str, list[RunPlan]] = {}
        for (run, target, settings, task, sample), endpoint in zip(specs, ends, strict=True):
            plans.setdefault(target.provider, []).append(
                RunPlan(
                    task=task,
                    provider=target.provider,
                    endpoint=endpoint,
                    settings=settings,
                    concurrency=concurrency,
                    seed=run.seed,
                    dialect=target.dialect,
                    profile=target.profile,
                    sim=target.sim,
                    retry_of=run.id,
                    samples=(sample,) if sample is not None else (),
                )
            )
        recorded = record_targets(plans, db_path, concurrency, progress)
    return [summary for label in plans for summary in recorded[label]]


def _check_retryable(run: StoredRun, retries: list[str], *, again: bool) -> None:
    if run.origin != "recorded":
        kind = ORIGIN_NOUNS.get(run.origin, f"a {run.origin}")
        raise NotReproducible(
            f"run {run.id} is {kind} run: only runs `traces record` recorded can be retried "
            "(they have a task and settings)"
        )
    if run.status != "failed" or run.termination != _RETRIED:
        hint = "; `traces record --resume` continues it" if run.status == "interrupted" else ""
        raise NotReproducible(
            f"run {run.id} did not end with a provider error ({run.status}, "
            f"{run.termination}): nothing to retry{hint}"
        )
    if retries and not again:
        raise NotReproducible(
            f"run {run.id} was retried already (by {', '.join(retries)}); --again retries it "
            "once more"
        )

"""Recording a suite against several targets at once, then comparing what was recorded.

Every target runs the same tasks with the same seeds (see `traces.running`), each with its
own concurrency bound; the new runs are checked, then compared in the targets' order.
"""

from __future__ import annotations

from collections.abc import Callable

from analyzer.checks.persist import analyze_recorded
from analyzer.checks.records import Finding
from analyzer.compare.costs import PriceList
from analyzer.compare.model import Comparison
from analyzer.compare.selection import GroupBy, Selection
from analyzer.compare.stored import compare_stored
from traces.environments import prepare_task
from traces.errors import EndpointError, TracesError
from traces.running import Recorded, RunProgress, dead_targets, record_targets, serving
from traces.running import target_plans as plans_for
from traces.store.database import Store
from traces.suites import Suite
from traces.targets import Target


def check_suite_targets(targets: list[Target], reference: str | None, by: GroupBy) -> None:
    """One-line errors for a suite recording that names no target, or a reference that is
    none of them."""
    if not targets:
        raise TracesError("--suite needs at least one --provider or --dialect to record")
    labels = [t.provider for t in targets]
    if reference is not None and by is GroupBy.provider and reference not in labels:
        raise TracesError(
            f"--reference {reference!r} is not one of the providers ({', '.join(labels)})"
        )


def record_suite(
    suite: Suite,
    targets: list[Target],
    db_path: Store,
    progress: RunProgress,
    *,
    repeat: int | None,
    concurrency: int,
    stream: bool,
    seed: int,
    timeout: float,
) -> Recorded:
    """Record every task of `suite` against every target into `db_path`.

    Unreachable endpoints are reported before the database is touched.
    """
    # Each task's MCP servers are started once first: one that cannot is bad input, and
    # nothing is written (see `traces.environments.discover_tools`).
    tasks = [
        entry.model_copy(
            update={"repeats": repeat or entry.repeats, "task": prepare_task(entry.task)}
        )
        for entry in suite.tasks
    ]
    with serving(targets, timeout) as endpoints:
        plans = {
            target.provider: plans_for(
                target, endpoint, tasks, concurrency=concurrency, stream=stream, seed=seed
            )
            for target, endpoint in zip(targets, endpoints, strict=True)
        }
        return record_targets(plans, db_path, concurrency, progress)


def silent_targets(recorded: Recorded) -> list[str]:
    """Warnings for each target none of whose runs got an answer; raises the exit-3
    `EndpointError` when that is every target."""
    dead = dead_targets(recorded)
    if dead and len(dead) == len(recorded):
        label, summaries = next(iter(dead.items()))
        raise EndpointError(
            f"{label}: endpoint failed on the first request: {summaries[0].outcome.error}"
        )
    return [
        f"warning: every run of {label} failed on the first request: {summaries[0].outcome.error}"
        for label, summaries in dead.items()
    ]


def compare_recorded(
    db_path: Store,
    recorded: Recorded,
    warn: Callable[[str], None],
    *,
    suite: str,
    prices: PriceList,
    reference: str | None,
    resamples: int,
    by: GroupBy,
) -> tuple[Comparison, dict[str, list[Finding]]]:
    """Check the runs just recorded (the checks fill the findings the comparison counts),
    then compare them in the targets' order; the comparison and the findings of each run.

    A target none of whose runs got an answer is warned about (`warn`); when that is every
    target, the exit-3 `EndpointError` is raised instead.
    """
    for warning in silent_targets(recorded):
        warn(warning)
    ids = [s.id for summaries in recorded.values() for s in summaries]
    findings = analyze_recorded(db_path, ids)
    comparison = compare_stored(
        db_path,
        Selection(run_ids=ids, by=by),
        prices=prices,
        reference=reference,
        resamples=resamples,
        suite=suite,
        group_order=list(recorded),
    )
    return comparison, findings

"""`traces record`: run a task against an endpoint (or the embedded simulator) and record it."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from analyzer.checks.live import LiveChecks
from analyzer.checks.persist import analyze_recorded, finding_counts
from analyzer.fail_on import check_fail_on_counts
from analyzer.options import (
    ApiKeyEnvOption,
    BaseUrlOption,
    DbOption,
    FailOnOption,
    FaultOption,
    FormatOption,
    ProvidersFileOption,
    TimeoutOption,
    finite,
)
from analyzer.output import OutputFormat, emit_rows, printable, stderr_console
from analyzer.progress import RunBars, run_bars
from traces.errors import EndpointError
from traces.model import RunOutcome
from traces.runner import RunSummary
from traces.running import dead_endpoint, record_targets, serving, target_plans
from traces.sample_files import resolve_task
from traces.sim.faults.spec import parse_faults
from traces.store.database import resolve_db_path
from traces.suites import SuiteTask
from traces.targets import resolve_target
from traces.tasks import Task, load_task


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("record")(record)


def record(
    task: Annotated[
        str,
        typer.Option(
            "--task", "-t", help="Task file (TOML), or a sample task's name (`traces tasks`)."
        ),
    ],
    provider: Annotated[
        str | None,
        typer.Option(
            help="Provider profile (see `traces providers`); with --base-url and no such "
            "profile, just a label [default: the embedded simulator]."
        ),
    ] = None,
    base_url: BaseUrlOption = None,
    model: Annotated[
        str | None, typer.Option(help="Model id [default: the profile's first].")
    ] = None,
    api_key_env: ApiKeyEnvOption = None,
    providers: ProvidersFileOption = None,
    reasoning_replay: Annotated[
        str,
        typer.Option(
            help="Where reasoning goes back: keep (the profile's choice), drop, or a field: "
            "reasoning_content, reasoning, reasoning_details, think_tag."
        ),
    ] = "keep",
    dialect: Annotated[
        str, typer.Option(help="Dialect the embedded simulator emulates (`traces sim --list`).")
    ] = "openai",
    fault: FaultOption = None,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Step limit [default: the task's].")
    ] = None,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="Stream responses.")] = True,
    repeat: Annotated[int, typer.Option(min=1, help="Runs to record.")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Runs in flight at once.")] = 4,
    seed: Annotated[
        int, typer.Option(help="Seed of the first run's world; run i uses seed+i.")
    ] = 0,
    temperature: Annotated[
        float | None, typer.Option(min=0, callback=finite, help="Sampling temperature.")
    ] = None,
    timeout: TimeoutOption = 600.0,
    db: DbOption = None,
    fmt: FormatOption = OutputFormat.table,
    fail_on: FailOnOption = None,
) -> None:
    """Record runs of a task; prints the run ids (progress on stderr)."""
    loaded = load_task(resolve_task(task))
    target = resolve_target(
        provider=provider,
        providers_file=providers,
        base_url=base_url,
        model=model,
        api_key_env=api_key_env,
        timeout=timeout,
        reasoning_replay=reasoning_replay,
        sim_dialect=dialect,
        sim_faults=parse_faults(fault or []),
        seed=seed,
    )
    db_path = resolve_db_path(db)
    runs = SuiteTask(task=loaded, repeats=repeat, max_steps=max_steps or loaded.max_steps)
    with LiveChecks(db_path) as live:
        with serving([target], timeout) as [endpoint]:
            plans = target_plans(
                target,
                endpoint,
                [runs],
                concurrency=concurrency,
                stream=stream,
                seed=seed,
                temperature=temperature,
            )
            with run_bars(lambda _, n: f"{loaded.name} × {n}", with_id=True) as bars:
                progress = _CheckingAsRunsEnd(bars, live, repeat, concurrency)
                recorded = record_targets({target.provider: plans}, db_path, concurrency, progress)
        summaries = recorded[target.provider]
        # The runs that ended last are checked here (with the recording over, a process of
        # their own would cost more than it saves) while the checker finishes its own, then
        # any it could not do.
        checked = analyze_recorded(
            db_path, [s.id for s in summaries if s.id not in progress.handed_over]
        )
        checked.update(analyze_recorded(db_path, live.finish()))
        counts = {**live.counts, **{run: finding_counts(f) for run, f in checked.items()}}
    dead = dead_endpoint(summaries)
    _report(summaries, fmt, loaded, {run: sum(c.values()) for run, c in counts.items()}, dead)
    if dead:
        raise dead
    check_fail_on_counts(counts, fail_on)


class _CheckingAsRunsEnd:
    """The recording's progress (`RunProgress`): the bars, and each run that ends while
    others wait to start handed to the live checks, so its findings show during the
    recording (`traces runs`)."""

    def __init__(self, bars: RunBars, live: LiveChecks, runs: int, concurrency: int) -> None:
        self.bars = bars
        self.live = live
        self.left = runs
        self.concurrency = concurrency
        self.handed_over: set[str] = set()

    def started(self, label: str, runs: int) -> None:
        self.bars.started(label, runs)

    def stepped(self, label: str) -> None:
        self.bars.stepped(label)

    def done(self, label: str, run_id: str, outcome: RunOutcome) -> None:
        self.bars.done(label, run_id, outcome)
        self.left -= 1
        if self.left >= self.concurrency:  # a queued run starts now: a run length to go
            self.live.check(run_id)
            self.handed_over.add(run_id)


def _report(
    summaries: list[RunSummary],
    fmt: OutputFormat,
    task: Task,
    findings: dict[str, int],
    dead: EndpointError | None,
) -> None:
    rows: list[dict[str, Any]] = [
        {
            "id": s.id,
            "seed": s.seed,
            "status": s.outcome.status.value,
            "termination": s.outcome.termination.value,
            "success": s.outcome.success,
            "steps": s.outcome.steps,
            "tool_calls": s.outcome.tool_calls,
            "error": s.outcome.error,
            "findings": findings.get(s.id, 0),
        }
        for s in summaries
    ]
    if fmt is OutputFormat.table:
        # Plain ids on stdout so `traces show $(traces record ...)` works; the story on stderr.
        err = stderr_console()
        # A dead endpoint's runs all say the same: its one error line tells it instead.
        for row in [] if dead else rows:
            verdict = {True: "success", False: "failed check"}.get(row["success"], "no answer")
            err.print(
                printable(
                    f"{row['id']}  {task.name}  {row['termination']}  {row['steps']} steps  "
                    f"{row['tool_calls']} tool calls  {verdict}  {row['findings']} findings"
                    + (f"  — {row['error']}" if row["error"] else ""),
                    keep="",
                )
            )
        for row in rows:
            sys.stdout.write(f"{row['id']}\n")
    else:
        emit_rows(rows, fmt)

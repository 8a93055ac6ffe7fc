"""`traces record`: run a task against an endpoint (or the embedded simulator) and record it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from analyzer.checks.live import LiveChecks, Watching
from analyzer.checks.persist import analyze_recorded, finding_counts
from analyzer.fail_on import FailOn, check_fail_on_counts
from analyzer.options import (
    ApiKeyEnvOption,
    BaseUrlOption,
    DataPathOption,
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
from analyzer.queries import resolve_run_id
from traces.environments import prepare_task
from traces.errors import EndpointError, TracesError
from traces.model import RunOutcome
from traces.resume.resuming import resume_runs
from traces.resume.retry import retry_failed as retry_failed_runs
from traces.runner import RunSummary
from traces.running import dead_endpoint, record_targets, serving, target_plans
from traces.sample_files import resolve_task
from traces.sim.faults.spec import parse_faults
from traces.store.database import Store, open_for_reading, resolve_db_path
from traces.suites import SampleChoice, SuiteTask
from traces.targets import resolve_target
from traces.tasks import load_task


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("record")(record)


def record(
    ctx: typer.Context,
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[RUN]...",
            help="With --resume or --retry-failed: the runs to take (id, unique prefix or "
            "`last`) [default: every run that applies].",
            show_default=False,
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            "-t",
            help="Task file (TOML), or a sample task's name (`traces tasks`); required unless "
            "--resume or --retry-failed.",
            show_default=False,
        ),
    ] = None,
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
    repeat: Annotated[
        int, typer.Option(min=1, help="Runs to record (of each sample, for a dataset).")
    ] = 1,
    limit: Annotated[
        int | None,
        typer.Option(
            min=1, help="A task with a dataset: its first N samples only.", show_default=False
        ),
    ] = None,
    sample: Annotated[
        list[str] | None,
        typer.Option(
            "--sample",
            help="A task with a dataset: this sample only (repeatable).",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Runs in flight at once.")] = 4,
    seed: Annotated[
        int, typer.Option(help="Seed of the first run's world; run i uses seed+i.")
    ] = 0,
    temperature: Annotated[
        float | None, typer.Option(min=0, callback=finite, help="Sampling temperature.")
    ] = None,
    timeout: TimeoutOption = 600.0,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue interrupted runs (RUN…, else every interrupted run) from their last "
            "committed step, with the task, endpoint, seed and settings they were recorded "
            "with; their tool calls are replayed into a fresh world first.",
        ),
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Record again, as new runs linked to them, the runs (RUN…, else every one) "
            "that ended with a provider error; the failed runs are kept.",
        ),
    ] = False,
    again: Annotated[
        bool, typer.Option("--again", help="With --retry-failed: runs retried already too.")
    ] = False,
    db: DbOption = None,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
    fail_on: FailOnOption = None,
) -> None:
    """Record runs of a task; prints the run ids (progress on stderr).

    `--resume` continues interrupted runs and `--retry-failed` records failed ones again,
    each as it was recorded: they take no option that describes what to record.
    """
    if resume or retry_failed:
        _check_taking_up(ctx, resume=resume, again=again)
        _take_up(
            runs or [],
            resume=resume,
            again=again,
            providers=providers,
            concurrency=concurrency,
            db_path=resolve_db_path(db, data_path),
            fmt=fmt,
            fail_on=fail_on,
        )
        return
    if runs:
        raise TracesError(
            f"unexpected argument {runs[0]!r}: RUN arguments go with --resume or --retry-failed"
        )
    if again:
        raise TracesError("--again goes with --retry-failed")
    if task is None:
        raise TracesError("--task is required (or --resume / --retry-failed to take up runs)")
    record_task(
        task,
        resolve_db_path(db, data_path),
        provider=provider,
        base_url=base_url,
        model=model,
        api_key_env=api_key_env,
        providers=providers,
        reasoning_replay=reasoning_replay,
        dialect=dialect,
        faults=fault or [],
        max_steps=max_steps,
        stream=stream,
        repeat=repeat,
        samples=SampleChoice(ids=sample or [], limit=limit),
        concurrency=concurrency,
        seed=seed,
        temperature=temperature,
        timeout=timeout,
        fmt=fmt,
        fail_on=fail_on,
    )


def record_task(
    task: str,
    db_path: Store,
    *,
    provider: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
    api_key_env: str | None = None,
    providers: Path | None = None,
    reasoning_replay: str = "keep",
    dialect: str = "openai",
    faults: list[str] | None = None,
    max_steps: int | None = None,
    stream: bool = True,
    repeat: int = 1,
    samples: SampleChoice | None = None,
    concurrency: int = 4,
    seed: int = 0,
    temperature: float | None = None,
    timeout: float = 600.0,
    fmt: OutputFormat = OutputFormat.table,
    fail_on: FailOn | None = None,
) -> None:
    """Record `repeat` runs of `task` (of each of its chosen dataset samples) into `db_path`
    and report them (the options and defaults of `traces record`; `traces demo` records
    through here too)."""
    # Before the store is opened: a server that cannot start is bad input, nothing written.
    loaded = prepare_task(load_task(resolve_task(task)))
    chosen = (samples or SampleChoice()).of(loaded)
    target = resolve_target(
        provider=provider,
        providers_file=providers,
        base_url=base_url,
        model=model,
        api_key_env=api_key_env,
        timeout=timeout,
        reasoning_replay=reasoning_replay,
        sim_dialect=dialect,
        sim_faults=parse_faults(faults or []),
        seed=seed,
    )
    entry = SuiteTask(
        task=loaded, repeats=repeat, max_steps=max_steps or loaded.max_steps, samples=chosen
    )
    with LiveChecks(db_path) as live:
        live.watch()  # the running runs' findings so far, once the recording lasts
        with serving([target], timeout) as [endpoint]:
            plans = target_plans(
                target,
                endpoint,
                [entry],
                concurrency=concurrency,
                stream=stream,
                seed=seed,
                temperature=temperature,
            )
            with run_bars(lambda _, n: f"{loaded.name} × {n}", with_id=True) as bars:
                progress = _CheckingAsRunsEnd(bars, live, plans[0].runs, concurrency)
                recorded = record_targets({target.provider: plans}, db_path, concurrency, progress)
        _finish(recorded[target.provider], db_path, fmt, fail_on, live, progress.handed_over)


class _CheckingAsRunsEnd(Watching):
    """The recording's progress (`RunProgress`): the bars, and each run that ends while
    others wait to start handed to the live checks, so its findings show during the
    recording (`traces runs`); each step ticks their watch of the running runs."""

    def __init__(self, bars: RunBars, live: LiveChecks, runs: int, concurrency: int) -> None:
        super().__init__(bars, live)
        self.left = runs
        self.concurrency = concurrency
        self.handed_over: set[str] = set()

    def done(self, label: str, run_id: str, outcome: RunOutcome) -> None:
        super().done(label, run_id, outcome)
        self.left -= 1
        if self.left >= self.concurrency:  # a queued run starts now: a run length to go
            self.live.check(run_id)
            self.handed_over.add(run_id)


_RECORDING_OPTIONS = (
    "task",
    "provider",
    "base_url",
    "model",
    "api_key_env",
    "reasoning_replay",
    "dialect",
    "fault",
    "max_steps",
    "stream",
    "repeat",
    "limit",
    "sample",
    "seed",
    "temperature",
    "timeout",
)
"""What describes a recording: a resumption or a retry takes all of it from the run."""


def _check_taking_up(ctx: typer.Context, *, resume: bool, again: bool) -> None:
    from typer._click.core import ParameterSource

    flag = "--resume" if resume else "--retry-failed"
    if resume and ctx.get_parameter_source("retry_failed") is ParameterSource.COMMANDLINE:
        raise TracesError("--resume and --retry-failed: one at a time")
    if resume and again:
        raise TracesError("--again goes with --retry-failed")
    given = [
        "--" + name.replace("_", "-")
        for name in _RECORDING_OPTIONS
        if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)
    ]
    if given:
        raise TracesError(
            f"{', '.join(given)}: not with {flag}, which uses the task, endpoint and settings "
            "each run was recorded with"
        )


def _take_up(
    refs: list[str],
    *,
    resume: bool,
    again: bool,
    providers: Path | None,
    concurrency: int,
    db_path: Store,
    fmt: OutputFormat,
    fail_on: FailOn | None,
) -> None:
    """Resume interrupted runs, or retry failed ones, then check and report them as
    `record` reports the runs it records."""
    # Also the check that the store exists: taking up runs never creates one.
    run_ids = _resolve_runs(db_path, refs)
    err = stderr_console()

    def refused(line: str) -> None:
        err.print(printable(f"skipped: {line}", keep=""))

    verb = "resumed" if resume else "retried"
    with LiveChecks(db_path) as live:
        live.watch()  # the runs' findings so far, once the recording lasts
        with run_bars(lambda label, n: f"{label} × {n} {verb}", with_id=True) as bars:
            summaries = _record_taken_up(
                db_path,
                run_ids,
                Watching(bars, live),
                refused,
                resume,
                again,
                providers,
                concurrency,
            )
        _finish(summaries, db_path, fmt, fail_on, live)


def _record_taken_up(
    db_path: Store,
    run_ids: list[str],
    progress: Watching,
    refused: Callable[[str], None],
    resume: bool,
    again: bool,
    providers: Path | None,
    concurrency: int,
) -> list[RunSummary]:
    """Resume (or retry) the runs, their progress to `progress`; their summaries."""
    if resume:
        return resume_runs(
            db_path,
            run_ids,
            providers_file=providers,
            concurrency=concurrency,
            progress=progress,
            refused=refused,
        )
    return retry_failed_runs(
        db_path,
        run_ids,
        again=again,
        providers_file=providers,
        concurrency=concurrency,
        progress=progress,
        refused=refused,
    )


def _resolve_runs(db_path: Store, refs: list[str]) -> list[str]:
    """Whole run ids for the RUN arguments (ids, unique prefixes, `last`), in order."""
    with open_for_reading(db_path) as conn:
        return list(dict.fromkeys(resolve_run_id(conn, ref) for ref in refs))


def _finish(
    summaries: list[RunSummary],
    db_path: Store,
    fmt: OutputFormat,
    fail_on: FailOn | None,
    live: LiveChecks | None = None,
    handed_over: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Check the runs just recorded (those not `handed_over` to the `live` checks already),
    report them, and exit as `record` does."""
    # The runs that ended last are checked here (with the recording over, a process of their
    # own would cost more than it saves) while the live checks finish theirs, then any they
    # could not do.
    checked = analyze_recorded(db_path, [s.id for s in summaries if s.id not in handed_over])
    counts = {run: finding_counts(found) for run, found in checked.items()}
    if live is not None:
        missed = analyze_recorded(db_path, live.finish())
        counts = {**live.counts, **counts, **{r: finding_counts(f) for r, f in missed.items()}}
    dead = dead_endpoint(summaries)
    _report(summaries, fmt, {run: sum(c.values()) for run, c in counts.items()}, dead)
    if dead:
        raise dead
    check_fail_on_counts(counts, fail_on)


def _report(
    summaries: list[RunSummary],
    fmt: OutputFormat,
    findings: dict[str, int],
    dead: EndpointError | None,
) -> None:
    retries = any(s.retry_of is not None for s in summaries)
    samples = any(s.sample is not None for s in summaries)
    rows: list[dict[str, Any]] = [
        {
            "id": s.id,
            "task": s.task,
            "seed": s.seed,
            **({"sample": s.sample} if samples else {}),
            "status": s.outcome.status.value,
            "termination": s.outcome.termination.value,
            "success": s.outcome.success,
            "success_detail": s.outcome.success_detail,
            "steps": s.outcome.steps,
            "tool_calls": s.outcome.tool_calls,
            "error": s.outcome.error,
            "findings": findings.get(s.id, 0),
            **({"retry_of": s.retry_of} if retries else {}),
        }
        for s in summaries
    ]
    if fmt is OutputFormat.table:
        # Plain ids on stdout so `traces show $(traces record ...)` works; the story on stderr.
        err = stderr_console()
        # A dead endpoint's runs all say the same: its one error line tells it instead.
        for row in [] if dead else rows:
            if row["termination"] != "completed":
                verdict = "no answer"
            else:
                verdict = {True: "success", False: "failed check"}.get(row["success"], "not judged")
            sample = f"  sample {row['sample']}" if row.get("sample") is not None else ""
            err.print(
                printable(
                    f"{row['id']}  {row['task']}{sample}  {row['termination']}  "
                    f"{row['steps']} steps  "
                    f"{row['tool_calls']} tool calls  {verdict}  {row['findings']} findings"
                    + (f"  (retry of {row['retry_of']})" if row.get("retry_of") else "")
                    + (f"  — {row['error']}" if row["error"] else ""),
                    keep="",
                )
            )
        for row in rows:
            sys.stdout.write(f"{row['id']}\n")
    else:
        emit_rows(rows, fmt)

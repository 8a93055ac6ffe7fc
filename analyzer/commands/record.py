"""`traces record`: run a task against an endpoint (or the embedded simulator) and record it."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from analyzer.checks.persist import analyze_runs
from analyzer.checks.records import Finding
from analyzer.commands.sim import parse_faults
from analyzer.fail_on import check_fail_on
from analyzer.options import DbOption, FailOnOption, FormatOption, TimeoutOption, finite
from analyzer.output import OutputFormat, emit_rows, printable, stderr_console
from analyzer.progress import stderr_progress
from analyzer.targets import Target, resolve_target
from traces.client import EndpointClient, EndpointConfig
from traces.errors import EndpointError, Interrupted
from traces.harness import HarnessSettings
from traces.interrupts import run_cancelling_on_signal
from traces.model import RunOutcome
from traces.runner import RunPlan, RunSummary, never_answered, record_runs
from traces.sample_files import resolve_task
from traces.sim.server import SimServer
from traces.store.database import open_for_writing, resolve_db_path
from traces.store.recorder import Recorder
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
    base_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible base URL (overrides the profile's)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model id [default: the profile's first].")
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            help="Environment variable holding the API key [default: the profile's; with "
            "--base-url alone, OPENAI_API_KEY when set, else no key]."
        ),
    ] = None,
    providers: Annotated[
        Path | None,
        typer.Option(
            "--providers",
            help="Providers file [default: $TRACES_PROVIDERS, else samples/providers.toml].",
        ),
    ] = None,
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
    fault: Annotated[
        list[str] | None,
        typer.Option("--fault", help="Simulator fault NAME=RATE (repeatable)."),
    ] = None,
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
    settings = HarnessSettings(
        model=target.model,
        max_steps=max_steps or loaded.max_steps,
        stream=stream,
        temperature=temperature,
        replay=target.replay,
        extra_body=target.extra_body,
    )
    with _endpoint(target, timeout) as endpoint:
        plan = RunPlan(
            task=loaded,
            provider=target.provider,
            endpoint=endpoint,
            settings=settings,
            repeat=repeat,
            concurrency=concurrency,
            seed=seed,
            dialect=target.dialect,
        )
        if target.endpoint is not None:
            # Before touching the database: a missing key or unreachable endpoint is bad input.
            asyncio.run(check_endpoint(endpoint))
        summaries = _record_with_progress(plan, db_path)
    # After the recorder closed: the checks need the database to themselves.
    findings = _analyze(db_path, [s.id for s in summaries])
    dead = _never_answered(summaries)
    _report(summaries, fmt, loaded, {run: len(found) for run, found in findings.items()}, dead)
    if dead:
        raise dead
    check_fail_on(findings, fail_on)


@contextlib.contextmanager
def _endpoint(target: Target, timeout: float) -> Iterator[EndpointConfig]:
    if target.endpoint is not None:
        yield target.endpoint
        return
    with SimServer(target.sim) as server:
        # The simulator needs no key; a placeholder keeps the SDK happy and is never stored.
        yield EndpointConfig(
            base_url=server.base_url, api_key_env=None, api_key="sim", timeout_s=timeout
        )


async def check_endpoint(endpoint: EndpointConfig) -> None:
    """Raise a one-line EndpointError when the endpoint cannot be reached at all."""
    client = EndpointClient(endpoint)
    try:
        await client.check_reachable()
    finally:
        await client.close()


def _record_with_progress(plan: RunPlan, db_path: Path) -> list[RunSummary]:
    recorder = Recorder(db_path)
    interrupted: list[str] = []
    try:
        with stderr_progress(notes=True) as progress:
            bar = progress.add_task(f"{plan.task.name} × {plan.repeat}", total=plan.repeat, last="")

            def done(run_id: str, outcome: RunOutcome) -> None:
                last = f"{run_id} {outcome.termination.value} ({outcome.steps} steps)"
                progress.update(bar, advance=1, last=last)

            # SIGTERM and Ctrl-C end every run under way as `interrupted`, durably.
            return run_cancelling_on_signal(
                record_runs(plan, recorder, done, on_interrupted=interrupted.append)
            )
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


def _analyze(db_path: Path, run_ids: list[str]) -> dict[str, list[Finding]]:
    """Run the checks on the new runs; returns the findings of each."""
    if not run_ids:
        return {}
    conn = open_for_writing(db_path)
    try:
        return analyze_runs(conn, run_ids)
    finally:
        conn.close()


def _never_answered(summaries: list[RunSummary]) -> EndpointError | None:
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

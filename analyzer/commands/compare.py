"""`traces compare`: providers side by side on the same suite, or runs already recorded.

With `--suite`, the suite is recorded first against every `--provider` and `--dialect` (all
at once, each with its own concurrency bound), checked, then compared. Without it, the runs
already in the database are compared, filtered by provider, model, task, time or id.
Exit codes as everywhere: 2 bad input (including a selection that matches no run), 3 no
endpoint answered at all, 4 database missing or locked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer.checks.persist import analyze_runs
from analyzer.checks.records import Finding
from analyzer.compare.build import build_comparison
from analyzer.compare.costs import PriceList
from analyzer.compare.model import Comparison
from analyzer.compare.recording import Recorded, record_suite
from analyzer.compare.render import emit_comparison
from analyzer.compare.selection import DEFAULT_ORIGINS, GroupBy, Selection, parse_moment
from analyzer.compare.specs import resolve_targets
from analyzer.compare.stats import DEFAULT_RESAMPLES
from analyzer.fail_on import check_fail_on
from analyzer.options import (
    DbOption,
    FailOnOption,
    FormatOption,
    GroupByOption,
    OriginFilterOption,
    ReferenceOption,
    RunFilterOption,
    SinceOption,
    TaskFilterOption,
    TimeoutOption,
    UntilOption,
    check_choice,
    run_origins,
)
from analyzer.output import OutputFormat, printable, stderr_console
from analyzer.queries import resolve_run_id
from traces.errors import EndpointError, TracesError
from traces.runner import never_answered
from traces.sample_files import resolve_suite
from traces.store.database import open_for_reading, open_for_writing, resolve_db_path
from traces.suites import load_suite


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("compare")(compare)


def compare(
    suite: Annotated[
        str | None,
        typer.Option(
            help="Suite file (TOML) or a sample suite's name (`traces tasks --suites`) to "
            "record first; without it, compare recorded runs."
        ),
    ] = None,
    provider: Annotated[
        list[str] | None,
        typer.Option(
            "--provider",
            help="With --suite: a profile to record, NAME or NAME:MODEL (repeatable). "
            "Without: only runs of this provider (repeatable).",
        ),
    ] = None,
    dialect: Annotated[
        list[str] | None,
        typer.Option(
            "--dialect",
            help="With --suite: an embedded-simulator dialect to record, NAME or "
            "NAME:FAULT=RATE,FAULT=RATE (repeatable).",
        ),
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option("--fault", help="Simulator fault NAME=RATE for every --dialect (repeatable)."),
    ] = None,
    providers: Annotated[
        Path | None,
        typer.Option(
            "--providers",
            help="Providers file [default: $TRACES_PROVIDERS, else samples/providers.toml].",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="With --suite: model for every provider without its own. Without: only "
            "runs of this model."
        ),
    ] = None,
    task: TaskFilterOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    run: RunFilterOption = None,
    origin: OriginFilterOption = None,
    repeat: Annotated[
        int | None, typer.Option(min=1, help="Runs of every task [default: the suite's repeats].")
    ] = None,
    concurrency_per_provider: Annotated[
        int | None,
        typer.Option(min=1, help="Runs in flight per provider [default: the suite's, else 4]."),
    ] = None,
    stream: Annotated[
        bool | None,
        typer.Option("--stream/--no-stream", help="Stream responses [default: the suite's]."),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of each task's first run; every provider gets the same.")
    ] = 0,
    timeout: TimeoutOption = 600.0,
    by: GroupByOption = GroupBy.provider,
    reference: ReferenceOption = None,
    resamples: Annotated[
        int, typer.Option(min=50, help="Bootstrap resamples per group.")
    ] = DEFAULT_RESAMPLES,
    db: DbOption = None,
    fmt: FormatOption = OutputFormat.table,
    fail_on: FailOnOption = None,
) -> None:
    """Compare providers: success, steps, tool-call validity, findings, latency, cost, with
    95% intervals and the significant differences."""
    check_choice("--origin", origin, run_origins)
    db_path = resolve_db_path(db)
    prices = PriceList.from_file(providers)
    findings: dict[str, list[Finding]] = {}
    if suite is None:
        _only_with_suite(
            dialect=dialect, fault=fault, repeat=repeat, stream=stream, fail_on=fail_on
        )
        if concurrency_per_provider is not None:
            raise TracesError("--concurrency-per-provider applies with --suite only")
        comparison = _compare_recorded(
            db_path,
            Selection(
                providers=provider or [],
                models=[model] if model else [],
                tasks=task or [],
                since=parse_moment("--since", since),
                until=parse_moment("--until", until),
                origins=origin or list(DEFAULT_ORIGINS),
                by=by,
            ),
            run or [],
            prices=prices,
            reference=reference,
            resamples=resamples,
        )
    else:
        if task or since or until or run:
            raise TracesError(
                "--task, --since, --until and --run select recorded runs: use them without --suite"
            )
        loaded = load_suite(resolve_suite(suite))
        targets = resolve_targets(
            providers=provider or [],
            dialects=dialect or [],
            faults=fault or [],
            providers_file=providers,
            model=model,
            timeout=timeout,
            seed=seed,
        )
        if not targets:
            raise TracesError("--suite needs at least one --provider or --dialect to record")
        labels = [t.provider for t in targets]
        if reference is not None and by is GroupBy.provider and reference not in labels:
            raise TracesError(
                f"--reference {reference!r} is not one of the providers ({', '.join(labels)})"
            )
        recorded = record_suite(
            loaded,
            targets,
            db_path,
            repeat=repeat,
            concurrency=concurrency_per_provider or loaded.defaults.concurrency,
            stream=loaded.defaults.stream if stream is None else stream,
            seed=seed,
            timeout=timeout,
        )
        ids = [s.id for summaries in recorded.values() for s in summaries]
        _check_endpoints_answered(recorded)
        conn = open_for_writing(db_path)
        try:
            # The checks fill the findings the comparison counts.
            findings = analyze_runs(conn, ids)
        finally:
            conn.close()
        conn = open_for_reading(db_path)
        try:
            comparison = build_comparison(
                conn,
                Selection(run_ids=ids, by=by),
                prices=prices,
                reference=reference,
                resamples=resamples,
                suite=loaded.name,
                group_order=labels,
            )
        finally:
            conn.close()
    emit_comparison(comparison, fmt)
    check_fail_on(findings, fail_on)


def _compare_recorded(
    db_path: Path,
    selection: Selection,
    runs: list[str],
    *,
    prices: PriceList,
    reference: str | None,
    resamples: int,
) -> Comparison:
    conn = open_for_reading(db_path)
    try:
        if runs:
            selection.run_ids = list(dict.fromkeys(resolve_run_id(conn, ref) for ref in runs))
        return build_comparison(
            conn, selection, prices=prices, reference=reference, resamples=resamples
        )
    finally:
        conn.close()


def _only_with_suite(**options: object) -> None:
    given = [name for name, value in options.items() if value not in (None, [])]
    if given:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise TracesError(f"{flags}: only with --suite (they describe what to record)")


def _check_endpoints_answered(recorded: Recorded) -> None:
    """Fail when no target answered at all; warn about each target that did not."""
    dead = {
        label: summaries
        for label, summaries in recorded.items()
        if summaries and all(never_answered(s.outcome) for s in summaries)
    }
    if dead and len(dead) == len(recorded):
        label, summaries = next(iter(dead.items()))
        raise EndpointError(
            f"{label}: endpoint failed on the first request: {summaries[0].outcome.error}"
        )
    err = stderr_console()
    for label, summaries in dead.items():
        err.print(
            printable(
                f"warning: every run of {label} failed on the first request: "
                f"{summaries[0].outcome.error}",
                keep="",
            )
        )

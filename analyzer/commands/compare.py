"""`traces compare`: providers side by side on the same suite, or runs already recorded.

With `--suite`, the suite is recorded first against every `--provider` and `--dialect` (all
at once, each with its own concurrency bound), checked, then compared. Without it, the runs
already in the database are compared, filtered by provider, model, task, time or id.
Exit codes as everywhere: 2 bad input (including a selection that matches no run), 3 no
endpoint answered at all, 4 database missing or locked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from analyzer.compare.costs import PriceList
from analyzer.compare.render import emit_comparison
from analyzer.compare.selection import GroupBy, selection_from_options
from analyzer.compare.stats import DEFAULT_RESAMPLES
from analyzer.compare.stored import compare_stored
from analyzer.fail_on import check_fail_on
from analyzer.options import (
    ConcurrencyPerProviderOption,
    DataPathOption,
    DbOption,
    FailOnOption,
    FaultOption,
    FormatOption,
    GroupByOption,
    OriginFilterOption,
    ProvidersFileOption,
    ReferenceOption,
    ResamplesOption,
    RunFilterOption,
    SinceOption,
    SuiteDialectOption,
    SuiteModelOption,
    SuiteOption,
    SuiteProviderOption,
    SuiteRepeatOption,
    SuiteSeedOption,
    SuiteStreamOption,
    TaskFilterOption,
    TimeoutOption,
    UntilOption,
    check_choice,
    only_with_suite,
    run_origins,
)
from analyzer.output import OutputFormat, printable, stderr_console
from traces.errors import TracesError
from traces.store.database import Store, resolve_db_path

if TYPE_CHECKING:
    from analyzer.checks.records import Finding
    from analyzer.compare.model import Comparison
    from traces.suites import Suite
    from traces.targets import Target


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("compare")(compare)


def compare(
    suite: SuiteOption = None,
    provider: SuiteProviderOption = None,
    dialect: SuiteDialectOption = None,
    fault: FaultOption = None,
    providers: ProvidersFileOption = None,
    model: SuiteModelOption = None,
    task: TaskFilterOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    run: RunFilterOption = None,
    origin: OriginFilterOption = None,
    repeat: SuiteRepeatOption = None,
    concurrency_per_provider: ConcurrencyPerProviderOption = None,
    stream: SuiteStreamOption = None,
    seed: SuiteSeedOption = 0,
    timeout: TimeoutOption = 600.0,
    by: GroupByOption = GroupBy.provider,
    reference: ReferenceOption = None,
    resamples: ResamplesOption = DEFAULT_RESAMPLES,
    db: DbOption = None,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
    fail_on: FailOnOption = None,
) -> None:
    """Compare providers: success, steps, tool-call validity, findings, latency, cost, with
    95% intervals and the significant differences."""
    check_choice("--origin", origin, run_origins)
    db_path = resolve_db_path(db, data_path)
    prices = PriceList.from_file(providers)
    findings: dict[str, list[Finding]] = {}
    if suite is None:
        only_with_suite(
            dialect=dialect,
            fault=fault,
            repeat=repeat,
            stream=stream,
            fail_on=fail_on,
            concurrency_per_provider=concurrency_per_provider,
        )
        comparison = stored_comparison(
            db_path, prices, provider=provider, model=model, task=task, since=since,
            until=until, origin=origin, by=by, run=run, reference=reference,
            resamples=resamples,
        )  # fmt: skip
    else:
        # The recording path's imports (the endpoint client, the simulator): only here.
        from traces.sample_files import resolve_suite
        from traces.suites import load_suite

        targets = suite_targets(
            provider=provider, dialect=dialect, fault=fault, providers=providers, model=model,
            timeout=timeout, seed=seed, selecting=bool(task or since or until or run),
        )  # fmt: skip
        comparison, findings = record_then_compare(
            load_suite(resolve_suite(suite)), targets, db_path, prices,
            repeat=repeat, concurrency=concurrency_per_provider, stream=stream, seed=seed,
            timeout=timeout, reference=reference, resamples=resamples, by=by,
        )  # fmt: skip
    emit_comparison(comparison, fmt)
    check_fail_on(findings, fail_on)


def stored_comparison(
    db_path: Store,
    prices: PriceList,
    *,
    provider: list[str] | None,
    model: str | None,
    task: list[str] | None,
    since: str | None,
    until: str | None,
    origin: list[str] | None,
    by: GroupBy,
    run: list[str] | None,
    reference: str | None,
    resamples: int,
) -> Comparison:
    """The comparison of the runs already stored that the selection options pick (`compare`
    and `verify` without --suite)."""
    selection = selection_from_options(
        providers=provider, model=model, tasks=task, since=since, until=until, origins=origin,
        by=by,
    )  # fmt: skip
    return compare_stored(
        db_path, selection, prices=prices, reference=reference, resamples=resamples, run_refs=run
    )


def suite_targets(
    *,
    provider: list[str] | None,
    dialect: list[str] | None,
    fault: list[str] | None,
    providers: Path | None,
    model: str | None,
    timeout: float,
    seed: int,
    selecting: bool,
) -> list[Target]:
    """The endpoints a suite is recorded against (`compare` and `verify` with --suite);
    `selecting`: options that pick stored runs were given too, which a suite refuses."""
    if selecting:
        raise TracesError(
            "--task, --since, --until and --run select recorded runs: use them without --suite"
        )
    from traces.targets import resolve_targets

    return resolve_targets(
        providers=provider or [], dialects=dialect or [], faults=fault or [],
        providers_file=providers, model=model, timeout=timeout, seed=seed,
    )  # fmt: skip


def record_then_compare(
    suite: Suite,
    targets: list[Target],
    db_path: Store,
    prices: PriceList,
    *,
    repeat: int | None,
    concurrency: int | None,
    stream: bool | None,
    seed: int,
    timeout: float,
    reference: str | None,
    resamples: int,
    by: GroupBy,
) -> tuple[Comparison, dict[str, list[Finding]]]:
    """Record the suite against every target (progress bars on stderr), then compare the
    runs just recorded; returns the comparison and the findings of those runs (`verify
    --suite` records this way too)."""
    from analyzer.checks.live import LiveChecks, Watching
    from analyzer.compare.recording import check_suite_targets, compare_recorded, record_suite
    from analyzer.progress import run_bars

    check_suite_targets(targets, reference, by)
    # The running runs' findings so far, once the recording lasts (`traces runs` shows them).
    with LiveChecks(db_path) as live, run_bars() as bars:
        live.watch()
        recorded = record_suite(
            suite,
            targets,
            db_path,
            Watching(bars, live),
            repeat=repeat,
            concurrency=concurrency or suite.defaults.concurrency,
            stream=suite.defaults.stream if stream is None else stream,
            seed=seed,
            timeout=timeout,
        )
    return compare_recorded(
        db_path,
        recorded,
        _warn,
        suite=suite.name,
        prices=prices,
        reference=reference,
        resamples=resamples,
        by=by,
    )


def _warn(line: str) -> None:
    stderr_console().print(printable(line, keep=""))

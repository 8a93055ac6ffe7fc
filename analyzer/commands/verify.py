"""`traces verify`: judge a policy's criteria on a comparison's intervals; a verdict for CI.

The comparison is `traces compare`'s, on the runs already stored (with its filters) or, with
`--suite`, on the suite recorded first against every `--provider` and `--dialect` (and
probed, when a criterion reads the template fingerprint). Exit codes: 0 every criterion
passes; 1 one fails; 5 none fails but some are inconclusive; 2 bad input (a policy, an
option, a selection matching nothing), nothing written; 3 no endpoint answered; 4 database
missing or locked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from analyzer.commands.compare import record_then_compare, stored_comparison, suite_targets
from analyzer.commands.probe import probe_into
from analyzer.compare.costs import PriceList
from analyzer.compare.recording import check_suite_targets
from analyzer.compare.selection import GroupBy
from analyzer.compare.stats import DEFAULT_RESAMPLES
from analyzer.options import (
    ConcurrencyPerProviderOption,
    DataPathOption,
    DbOption,
    FaultOption,
    FormatOption,
    GroupByOption,
    OriginFilterOption,
    ProvidersFileOption,
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
from analyzer.verify.fingerprints import load_fingerprints
from analyzer.verify.judge import verify as judge
from analyzer.verify.junit import junit_xml
from analyzer.verify.markdown import markdown_summary
from analyzer.verify.model import Verification
from analyzer.verify.policy import PolicyFileError, load_policy
from analyzer.verify.render import emit_verification
from traces.errors import TracesError
from traces.sample_files import resolve_suite
from traces.store.database import Store, open_for_reading, resolve_db_path
from traces.suites import load_suite

SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
"""GitHub Actions' job summary file: the Markdown summary is appended to it when it is set."""


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("verify")(verify)


def verify(
    policy: Annotated[
        str,
        typer.Option(
            help="Policy file (TOML) or a sample policy's name: faithful, k2vv.",
        ),
    ],
    junit: Annotated[
        Path | None, typer.Option(help="Also write the judgements as JUnit XML to this file.")
    ] = None,
    markdown: Annotated[
        Path | None,
        typer.Option(
            help="Also write a Markdown summary to this file (appended to "
            "$GITHUB_STEP_SUMMARY too, when it is set)."
        ),
    ] = None,
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
    reference: Annotated[
        str | None,
        typer.Option(
            help="Group that relative criteria and tool_call_f1 are judged against "
            "[default: the policy's `reference`]."
        ),
    ] = None,
    resamples: ResamplesOption = DEFAULT_RESAMPLES,
    db: DbOption = None,
    data_path: DataPathOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Judge a policy's criteria on the comparison's 95% intervals: pass, fail or
    inconclusive (with the runs needed) for every group; exit 0 pass, 1 fail, 5 inconclusive."""
    check_choice("--origin", origin, run_origins)
    rules = load_policy(policy)
    reference = reference or rules.reference
    if rules.needs_reference and reference is None:
        raise PolicyFileError(
            f"{rules.source}: criteria: judged against a reference group: give --reference NAME "
            "(or `reference` in the policy)"
        )
    for option, path in (("--junit", junit), ("--markdown", markdown)):
        _check_writable(option, path)
    db_path = resolve_db_path(db, data_path)
    prices = PriceList.from_file(providers)
    if suite is None:
        only_with_suite(
            dialect=dialect, fault=fault, repeat=repeat, stream=stream,
            concurrency_per_provider=concurrency_per_provider,
        )  # fmt: skip
        comparison = stored_comparison(
            db_path, prices, provider=provider, model=model, task=task, since=since,
            until=until, origin=origin, by=by, run=run, reference=reference,
            resamples=resamples,
        )  # fmt: skip
    else:
        targets = suite_targets(
            provider=provider, dialect=dialect, fault=fault, providers=providers, model=model,
            timeout=timeout, seed=seed, selecting=bool(task or since or until or run),
        )  # fmt: skip
        loaded = load_suite(resolve_suite(suite))
        check_suite_targets(targets, reference, by)
        if rules.needs_fingerprints:
            probe_into(db_path, targets, seed=seed, timeout=timeout)
        comparison, _ = record_then_compare(
            loaded, targets, db_path, prices,
            repeat=repeat, concurrency=concurrency_per_provider, stream=stream, seed=seed,
            timeout=timeout, reference=reference, resamples=resamples, by=by,
        )  # fmt: skip
    fingerprints = None
    if rules.needs_fingerprints and by is GroupBy.provider:
        fingerprints = _fingerprints(db_path, [g.name for g in comparison.groups])
    verification = judge(rules, comparison, fingerprints)
    emit_verification(verification, fmt)
    _write_reports(verification, junit, markdown)
    if fmt is not OutputFormat.table:  # the table ends with the verdict already
        stderr_console().print(printable(verification.summary(), keep=""), highlight=False)
    if verification.exit_code:
        raise typer.Exit(verification.exit_code)


def _fingerprints(db_path: Store, groups: list[str]) -> dict[str, str | None]:
    with open_for_reading(db_path) as conn:
        return load_fingerprints(conn, groups)


def _check_writable(option: str, path: Path | None) -> None:
    """Refuse, before anything runs, a report path whose folder does not exist."""
    if path is None:
        return
    if path.is_dir():
        raise TracesError(f"{option} {path}: is a directory; give a file name")
    if not path.parent.is_dir():
        raise TracesError(f"{option} {path}: folder {path.parent} does not exist")


def _write_reports(verification: Verification, junit: Path | None, markdown: Path | None) -> None:
    try:
        if junit is not None:
            junit.write_text(junit_xml(verification), encoding="utf-8")
        summary = markdown_summary(verification)
        if markdown is not None:
            markdown.write_text(summary, encoding="utf-8")
        step_summary = os.environ.get(SUMMARY_ENV)
        if step_summary:
            with open(step_summary, "a", encoding="utf-8") as out:
                out.write(summary + "\n")
    except OSError as exc:
        raise TracesError(f"cannot write a report: {exc.strerror or exc}: {exc.filename}") from None

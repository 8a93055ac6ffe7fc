"""`traces report --html FILE`: the comparison, its charts and per-run timelines as one
self-contained HTML page.

Selects runs like `traces compare` without `--suite`. Prints the file's path on stdout and a
one-line summary on stderr. Exit codes as everywhere: 2 bad input (a selection that matches
no run, a path that cannot be written), 4 database missing or locked.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from analyzer.compare.costs import PriceList
from analyzer.compare.selection import GroupBy, select_run_refs, selection_from_options
from analyzer.options import (
    DataPathOption,
    DbOption,
    GroupByOption,
    ModelFilterOption,
    OriginFilterOption,
    ProvidersFileOption,
    ReferenceOption,
    RunFilterOption,
    SinceOption,
    TaskFilterOption,
    UntilOption,
    check_choice,
    run_origins,
)
from analyzer.output import note
from analyzer.report.build import DEFAULT_RUNS_PER_GROUP, Report, build_report
from analyzer.report.page import render_page
from analyzer.report.save import check_writable, write_atomically
from traces.store.database import open_for_reading, resolve_db_path

if TYPE_CHECKING:
    from analyzer.verify.policy import Policy


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("report")(report)


def report(
    html: Annotated[Path, typer.Option("--html", help="HTML file to write (replaced atomically).")],
    provider: Annotated[
        list[str] | None,
        typer.Option("--provider", help="Only runs of this provider (repeatable)."),
    ] = None,
    model: ModelFilterOption = None,
    task: TaskFilterOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    run: RunFilterOption = None,
    origin: OriginFilterOption = None,
    by: GroupByOption = GroupBy.provider,
    reference: ReferenceOption = None,
    runs: Annotated[
        int,
        typer.Option(
            "--runs", min=0, help="Timelines of the newest N runs of each group (0: none)."
        ),
    ] = DEFAULT_RUNS_PER_GROUP,
    policy: Annotated[
        str | None,
        typer.Option(
            help="Show this policy's verdict first (`traces verify`'s: a file, or faithful, k2vv).",
            show_default=False,
        ),
    ] = None,
    providers: ProvidersFileOption = None,
    db: DbOption = None,
    data_path: DataPathOption = None,
) -> None:
    """Write an HTML report: a policy's verdict (with --policy), comparison table, significant
    differences, charts and run timelines with findings marked."""
    check_choice("--origin", origin, run_origins)
    rules: Policy | None = None
    if policy is not None:
        # A policy's imports (its checks, the probes' fingerprints): only with --policy.
        from analyzer.verify.policy import PolicyFileError, load_policy

        rules = load_policy(policy)
        reference = reference or rules.reference
        if rules.needs_reference and reference is None:
            raise PolicyFileError(
                f"{rules.source}: criteria: judged against a reference group: give "
                "--reference NAME (or `reference` in the policy)"
            )
    # Before the comparison, which can take a while on a large database.
    check_writable(html)
    db_path = resolve_db_path(db, data_path)
    selection = selection_from_options(
        providers=provider,
        model=model,
        tasks=task,
        since=since,
        until=until,
        origins=origin,
        by=by,
    )
    prices = PriceList.from_file(providers)
    with open_for_reading(db_path) as conn:
        select_run_refs(conn, selection, run or [])
        built = build_report(
            conn,
            selection,
            database=db_path,
            prices=prices,
            reference=reference,
            runs_per_group=runs,
        )
        if rules is not None:
            from analyzer.verify.fingerprints import load_fingerprints
            from analyzer.verify.judge import verify as judge

            groups = [g.name for g in built.comparison.groups]
            fingerprints = (
                load_fingerprints(conn, groups)
                if rules.needs_fingerprints and by is GroupBy.provider
                else None
            )
            built = replace(built, verification=judge(rules, built.comparison, fingerprints))
    write_atomically(html, render_page(built))
    print(html)
    note(_summary(built))


def _summary(built: Report) -> str:
    comparison = built.comparison
    total = sum(g.runs for g in comparison.groups)
    drawn = sum(len(t.runs) for t in built.timelines)
    omitted = sum(t.omitted for t in built.timelines)
    names = ", ".join(g.name for g in comparison.groups)
    verdict = f"verdict {built.verification.status}; " if built.verification else ""
    return (
        f"report: {verdict}{total} runs in {len(comparison.groups)} groups ({names}); "
        f"{len(comparison.significant)} significant differences; "
        f"{drawn} run timelines ({omitted} omitted)"
    )

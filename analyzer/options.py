"""Options shared by several commands, declared once."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, get_args

import typer

from analyzer.compare.group_by import GroupBy
from analyzer.fail_on import FailOn
from analyzer.output import OutputFormat
from traces.errors import TracesError

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Trace database file, or a lake store: ducklake:postgres:CONNINFO, "
        "ducklake:sqlite:PATH, ducklake:PATH [default: $TRACES_DB, else ./traces.duckdb].",
        show_default=False,
    ),
]
DataPathOption = Annotated[
    str | None,
    typer.Option(
        "--data-path",
        help="Data files of a lake store (--db ducklake:…), needed to create one "
        "[default: $TRACES_DATA_PATH, else the path the store's catalog holds].",
        show_default=False,
    ),
]
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)
]
FailOnOption = Annotated[
    FailOn | None,
    typer.Option(
        "--fail-on",
        help="Exit 1 (after the usual output) when the checks stored findings of this severity "
        "or worse for the runs of this command: error, or warning (warnings and errors).",
        case_sensitive=False,
        show_default=False,
    ),
]


WideOption = Annotated[
    bool,
    typer.Option(
        "--wide", help="Tables: full run ids and every column, nothing cut to fit the terminal."
    ),
]


def finite(value: float | None) -> float | None:
    """Option callback: refuse NaN and infinities, which pass every `min`/`max` bound and
    would reach a request body or the store as numbers JSON cannot hold."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


TimeoutOption = Annotated[
    float, typer.Option(min=0.1, callback=finite, help="Request deadline, seconds.")
]


def check_choice(
    option: str, given: str | Iterable[str] | None, valid: Callable[[], Iterable[str]]
) -> None:
    """Refuse (exit 2, one line listing the valid values) a filter value that can match
    nothing because it is not a value the field ever holds. `valid` is asked only when a
    value was given: listing some fields' values imports the trace models."""
    values = [given] if isinstance(given, str) else list(given or ())
    allowed = list(valid()) if values else []
    for value in values:
        if value not in allowed:
            raise TracesError(f"{option} {value!r}: unknown (valid: {', '.join(allowed)})")


def run_statuses() -> list[str]:
    """Every value of `runs.status`."""
    from traces.model import RunStatus

    return [status.value for status in RunStatus]


def run_origins() -> list[str]:
    """Every value of `runs.origin`."""
    from traces.model import RunRecord

    return list(get_args(RunRecord.model_fields["origin"].annotation))


def finding_layers() -> list[str]:
    """Every layer a finding can blame."""
    from analyzer.checks.records import Layer

    return list(get_args(Layer))


TaskFilterOption = Annotated[
    list[str] | None, typer.Option("--task", help="Only runs of this task (repeatable).")
]
SinceOption = Annotated[
    str | None, typer.Option(help="Only runs started at or after this UTC date/time (ISO).")
]
UntilOption = Annotated[
    str | None, typer.Option(help="Only runs started before this UTC date/time (ISO).")
]
RunFilterOption = Annotated[
    list[str] | None,
    typer.Option("--run", help="Only this run: id, prefix or `last` (repeatable)."),
]
OriginFilterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--origin",
        help="Only runs of this origin: recorded, imported, probe, proxy, replay (repeatable) "
        "[default: recorded, imported and replay].",
    ),
]
GroupByOption = Annotated[
    GroupBy,
    typer.Option(
        help="One column per provider, upstream host (behind a router) or model; or per "
        "provider and day or ISO week a run started (drift over time)."
    ),
]
ReferenceOption = Annotated[
    str | None,
    typer.Option(help="Group that tool_call_f1 is measured against (K2VV's 'official')."),
]


# What `compare --suite` and `verify --suite` record, or without --suite which stored runs
# they read: the same options for both commands.
SuiteOption = Annotated[
    str | None,
    typer.Option(
        help="Suite file (TOML) or a sample suite's name (`traces tasks --suites`) to "
        "record first; without it, compare recorded runs."
    ),
]
SuiteProviderOption = Annotated[
    list[str] | None,
    typer.Option(
        "--provider",
        help="With --suite: a profile to record, NAME or NAME:MODEL (repeatable). "
        "Without: only runs of this provider (repeatable).",
    ),
]
SuiteDialectOption = Annotated[
    list[str] | None,
    typer.Option(
        "--dialect",
        help="With --suite: an embedded-simulator dialect to record, NAME or "
        "NAME:FAULT=RATE,FAULT=RATE (repeatable).",
    ),
]
SuiteModelOption = Annotated[
    str | None,
    typer.Option(
        help="With --suite: model for every provider without its own. Without: only "
        "runs of this model."
    ),
]
SuiteRepeatOption = Annotated[
    int | None, typer.Option(min=1, help="Runs of every task [default: the suite's repeats].")
]
ConcurrencyPerProviderOption = Annotated[
    int | None,
    typer.Option(min=1, help="Runs in flight per provider [default: the suite's, else 4]."),
]
SuiteStreamOption = Annotated[
    bool | None,
    typer.Option("--stream/--no-stream", help="Stream responses [default: the suite's]."),
]
SuiteSeedOption = Annotated[
    int, typer.Option(help="Seed of each task's first run; every provider gets the same.")
]
ResamplesOption = Annotated[int, typer.Option(min=50, help="Bootstrap resamples per group.")]


def only_with_suite(**options: object) -> None:
    """One-line error naming the options given (not None or empty) that describe what to
    record, for a command run without --suite."""
    given = [name for name, value in options.items() if value not in (None, [])]
    if given:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise TracesError(f"{flags}: only with --suite (they describe what to record)")


# Where runs go: `record`, `compare`, `probe` (and the files `providers` and `report` read).
ProvidersFileOption = Annotated[
    Path | None,
    typer.Option(
        "--providers",
        help="Providers file (profiles and prices) [default: $TRACES_PROVIDERS, else "
        "samples/providers.toml].",
    ),
]
FaultOption = Annotated[
    list[str] | None,
    typer.Option(
        "--fault",
        metavar="NAME[=RATE]",
        help="Simulator fault injected into this share of requests, 1 for a bare NAME "
        "(repeatable; see `traces sim --list`).",
    ),
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option(
        help="OpenAI-compatible base URL (overrides the profile's; without a profile, needs "
        "--model)."
    ),
]
ApiKeyEnvOption = Annotated[
    str | None,
    typer.Option(
        help="Environment variable holding the API key [default: the profile's; with "
        "--base-url alone, OPENAI_API_KEY when set, else no key]."
    ),
]
ProfileModelOption = Annotated[
    str | None, typer.Option(help="Model id [default: each profile's first].")
]
"""`--model` of the commands that take several `--provider` profiles (`probe`, `replay`)."""
ProviderFilterOption = Annotated[str | None, typer.Option(help="Only runs of this provider.")]
ModelFilterOption = Annotated[str | None, typer.Option(help="Only runs of this model.")]

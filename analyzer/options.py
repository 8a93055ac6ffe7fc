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
ProviderFilterOption = Annotated[str | None, typer.Option(help="Only runs of this provider.")]
ModelFilterOption = Annotated[str | None, typer.Option(help="Only runs of this model.")]

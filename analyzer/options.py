"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer.compare.group_by import GroupBy
from analyzer.output import OutputFormat

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="Trace database file [default: $TRACES_DB, else ./traces.duckdb].",
        show_default=False,
    ),
]
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)
]


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
        help="Only runs of this origin: recorded, imported, probe (repeatable) "
        "[default: recorded and imported].",
    ),
]
GroupByOption = Annotated[
    GroupBy,
    typer.Option(help="One column per provider, upstream host (behind a router) or model."),
]
ReferenceOption = Annotated[
    str | None,
    typer.Option(help="Group that tool_call_f1 is measured against (K2VV's 'official')."),
]

"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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

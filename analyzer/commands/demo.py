"""`traces demo`: record a short run against the embedded simulator and show it."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from analyzer.commands.record import record_task
from analyzer.commands.show import show
from analyzer.options import DataPathOption, DbOption
from analyzer.output import OutputFormat
from traces.sample_files import resolve_task
from traces.store.database import resolve_db_path


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("demo")(demo)


def demo(
    task: Annotated[
        str, typer.Option(help="Sample task to run (`traces tasks`), or a task file.")
    ] = "research",
    db: DbOption = None,
    data_path: DataPathOption = None,
) -> None:
    """Record one sample task offline against the simulator, then print its timeline."""
    path = resolve_task(task)
    db_path = resolve_db_path(db, data_path)
    sys.stderr.write(
        f"recording sample task {task!r} against the embedded simulator into {db_path}\n"
    )
    record_task(str(path), db_path, repeat=1, concurrency=1)
    show(run="last", full=False, db=str(db_path), data_path=data_path, fmt=OutputFormat.table)
    sys.stderr.write(
        f"\nnext: traces runs --db {db_path}   traces show last --full   "
        f'traces sql "select idx, latency_ms, prompt_tokens from steps"\n'
    )

"""Progress bars on stderr, configured once for every long command.

Data goes to stdout, so bars go to stderr, and only when it is a terminal: piped or captured
output (CI, `| jq`) gets no control sequences.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)


def stderr_progress(*, notes: bool = False, transient: bool = False) -> Progress:
    """A `Progress` on stderr: description, bar, done/total, elapsed time.

    With `notes`, each task also shows its `last` field (e.g. the run that just ended); add
    tasks with `last=""`.
    """
    err = Console(file=sys.stderr)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if notes:
        columns.append(TextColumn("{task.fields[last]}"))
    columns.append(TimeElapsedColumn())
    return Progress(*columns, console=err, transient=transient, disable=not err.is_terminal)


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """One transient bar of `total` items; yields `advance(n)`."""
    with stderr_progress(transient=True) as progress:
        bar = progress.add_task(label, total=total)
        yield lambda n: progress.advance(bar, n)

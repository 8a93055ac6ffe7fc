"""Progress bars on stderr, configured once for every long command.

Data goes to stdout, so bars go to stderr, and only when it is a terminal: piped or captured
output (CI, `| jq`) gets no control sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from analyzer.output import printable, stderr_console

if TYPE_CHECKING:
    from traces.model import RunOutcome


class _EscapingProgress(Progress):
    """A `Progress` whose descriptions and notes (task names, provider labels, run ids) are
    shown with their control characters escaped, like every other recorded text."""

    def add_task(self, description: str, *args: Any, **fields: Any) -> TaskID:
        if isinstance(fields.get("last"), str):
            fields["last"] = printable(fields["last"], keep="")
        return super().add_task(printable(description, keep=""), *args, **fields)

    def update(self, task_id: TaskID, *args: Any, **fields: Any) -> None:
        for key in ("description", "last"):
            if isinstance(fields.get(key), str):
                fields[key] = printable(fields[key], keep="")
        super().update(task_id, *args, **fields)


def stderr_progress(
    *, notes: bool = False, steps: bool = False, transient: bool = False
) -> Progress:
    """A `Progress` on stderr: description, bar, done/total, elapsed time.

    With `steps`, each task also counts its `steps` field (the steps committed so far: a
    long run moves while the run count stands still); add tasks with `steps=0`. With
    `notes`, each task also shows its `last` field (e.g. the run that just ended); add
    tasks with `last=""`.
    """
    err = stderr_console()
    # Descriptions and notes hold task names and run labels: text, never markup.
    columns = [
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if steps:
        columns.append(TextColumn("{task.fields[steps]} steps", markup=False))
    if notes:
        columns.append(TextColumn("{task.fields[last]}", markup=False))
    columns.append(TimeElapsedColumn())
    return _EscapingProgress(
        *columns, console=err, transient=transient, disable=not err.is_terminal
    )


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """One transient bar of `total` items; yields `advance(n)`."""
    with stderr_progress(transient=True) as progress:
        bar = progress.add_task(label, total=total)
        yield lambda n: progress.advance(bar, n)


class RunBars:
    """One bar per target while runs record (a `traces.running.RunProgress`), each counting
    runs and committed steps, and noting the run that ended last."""

    def __init__(
        self, progress: Progress, title: Callable[[str, int], str], *, with_id: bool
    ) -> None:
        self._progress = progress
        self._title = title
        self._with_id = with_id
        self._bars: dict[str, TaskID] = {}
        self._steps: dict[str, int] = {}

    def started(self, label: str, runs: int) -> None:
        """Add the bar of a target about to record `runs` runs."""
        self._bars[label] = self._progress.add_task(
            self._title(label, runs), total=runs, last="", steps=0
        )
        self._steps[label] = 0

    def stepped(self, label: str) -> None:
        """Count one more committed step of the target's runs."""
        self._steps[label] += 1
        self._progress.update(self._bars[label], steps=self._steps[label])

    def done(self, label: str, run_id: str, outcome: RunOutcome) -> None:
        """Advance the target's bar past one ended run."""
        last = f"{outcome.termination.value} ({outcome.steps} steps)"
        if self._with_id:
            last = f"{run_id} {last}"
        self._progress.update(self._bars[label], advance=1, last=last)


@contextmanager
def run_bars(
    title: Callable[[str, int], str] = lambda label, runs: label, *, with_id: bool = False
) -> Iterator[RunBars]:
    """Bars on stderr for targets recording runs, titled `title(label, runs)`."""
    with stderr_progress(notes=True, steps=True) as progress:
        yield RunBars(progress, title, with_id=with_id)

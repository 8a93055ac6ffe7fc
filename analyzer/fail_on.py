"""`--fail-on error|warning`: exit 1 when a command stored findings of that severity or worse.

`record`, `import`, `analyze` and `compare --suite` store findings for the runs they
recorded, imported or analyzed; with the option, a CI job can gate on them. The command
prints its output as usual, then ends with one line naming the findings and exit code 1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING

from traces.errors import TracesError

if TYPE_CHECKING:  # the option is declared by reading commands too, which never check
    from analyzer.checks.records import Finding

_RANK = {"info": 0, "warning": 1, "error": 2}


class FailOn(StrEnum):
    """The least severe finding that fails the command."""

    error = "error"
    warning = "warning"


class FindingsFound(TracesError):
    """Findings at or above the `--fail-on` severity were stored: the check failed."""

    exit_code = 1


def check_fail_on(found: Mapping[str, Iterable[Finding]], fail_on: FailOn | None) -> None:
    """Raise FindingsFound when `found` (run id -> its findings) holds a finding of
    `fail_on`'s severity or worse; the message counts them by kind, most severe first."""
    if fail_on is None:
        return
    check_fail_on_counts(
        {run: Counter((f.severity, f.kind) for f in findings) for run, findings in found.items()},
        fail_on,
    )


def check_fail_on_counts(
    counts: Mapping[str, Mapping[tuple[str, str], int]], fail_on: FailOn | None
) -> None:
    """`check_fail_on` given each run's findings counted by (severity, kind)."""
    if fail_on is None:
        return
    floor = _RANK[fail_on.value]
    kinds: Counter[tuple[int, str]] = Counter()
    runs = 0
    for counted in counts.values():
        failing = {k: n for k, n in counted.items() if _RANK.get(k[0], 0) >= floor and n > 0}
        kinds.update({(_RANK[severity], kind): n for (severity, kind), n in failing.items()})
        runs += bool(failing)
    if not kinds:
        return
    ordered = sorted(kinds.items(), key=lambda item: (-item[0][0], -item[1], item[0][1]))
    listed = ", ".join(f"{kind}×{count}" for (_, kind), count in ordered)
    worst = "error" if ordered[0][0][0] == _RANK["error"] else "warning"
    total = sum(kinds.values())
    raise FindingsFound(
        f"--fail-on {fail_on.value}: {total} finding{'s' * (total != 1)} "
        f"(worst: {worst}) in {runs} of {len(counts)} run{'s' * (len(counts) != 1)}: {listed}"
    )

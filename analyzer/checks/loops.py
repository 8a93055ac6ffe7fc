"""Repeated identical calls: the model stuck in a loop, calling the same tool with the same
arguments step after step (usually because it ignores or misreads the result)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from analyzer.checks.records import Call, Finding, Run

KINDS = frozenset({"repeated_call"})
"""Finding kinds this module emits (the catalogue describes each)."""

LOOP_MIN = 3
"""Consecutive identical calls that make a loop; two can be a legitimate retry."""


def _signature(calls: tuple[Call, ...]) -> str | None:
    if not calls:
        return None
    return json.dumps(
        [
            [c.name, c.arguments if c.json_valid else c.arguments_raw]
            for c in sorted(calls, key=lambda c: c.index)
        ],
        sort_keys=True,
    )


def repeated_calls(run: Run) -> Iterator[Finding]:
    """One finding per streak of LOOP_MIN or more steps making exactly the same calls."""
    streak: list[int] = []
    last: str | None = None
    calls_steps = [s for s in run.steps if not s.failed]

    def report() -> Iterator[Finding]:
        if last is not None and len(streak) >= LOOP_MIN:
            yield Finding(
                "repeated_call",
                "warning",
                "model",
                streak[LOOP_MIN - 1],
                {"calls": json.loads(last), "times": len(streak), "steps": [streak[0], streak[-1]]},
            )

    for step in calls_steps:
        signature = _signature(step.calls)
        if signature is not None and signature == last:
            streak.append(step.index)
            continue
        yield from report()
        streak, last = [step.index], signature
    yield from report()

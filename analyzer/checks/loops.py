"""Repeated identical calls: the model stuck in a loop, calling the same tool with the same
arguments step after step (usually because it ignores or misreads the result), or making the
same call once more right after it got its answer."""

from __future__ import annotations

import json
from collections.abc import Iterator

from analyzer.checks.records import Call, Finding, Run, Step

KINDS = frozenset({"repeated_call", "repeated_call_once"})
"""Finding kinds this module emits (the catalogue describes each)."""

LOOP_MIN = 3
"""Consecutive identical calls that make a loop; two can be a legitimate retry, reported as
`repeated_call_once` (info) instead."""


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


def _streak_finding(streak: list[Step], signature: str) -> Finding | None:
    """A loop (LOOP_MIN or more steps) or a single repeat (two), else None."""
    steps = [step.index for step in streak]
    calls = json.loads(signature)
    if len(streak) >= LOOP_MIN:
        return Finding(
            "repeated_call",
            "warning",
            "model",
            steps[LOOP_MIN - 1],
            {"calls": calls, "times": len(steps), "steps": [steps[0], steps[-1]]},
        )
    if len(streak) == 2:
        # Whether the first call's result failed: then the repeat may be a deliberate retry.
        first = streak[0]
        failed = bool(first.results) and all(r.error is not None for r in first.results)
        return Finding(
            "repeated_call_once",
            "info",
            "model",
            steps[1],
            {"calls": calls, "times": 2, "steps": steps, "previous_failed": failed},
        )
    return None


def repeated_calls(run: Run) -> Iterator[Finding]:
    """One finding per streak of steps making exactly the same calls: `repeated_call` for
    LOOP_MIN or more, `repeated_call_once` for two (never both for one streak)."""
    streak: list[Step] = []
    last: str | None = None
    for step in run.steps:
        if step.failed:
            continue  # a failed request says nothing about what the model called
        signature = _signature(step.calls)
        if signature is not None and signature == last:
            streak.append(step)
            continue
        if last is not None:
            finding = _streak_finding(streak, last)
            if finding is not None:
                yield finding
        streak, last = [step], signature
    if last is not None:
        finding = _streak_finding(streak, last)
        if finding is not None:
            yield finding

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


def _may_match(first: tuple[Call, ...], second: tuple[Call, ...]) -> bool:
    """Whether two steps' calls may have one `_signature`, told without encoding them (most
    steps calling the same tools differ in their values): values that compare unequal
    encode differently, except NaN (unequal to itself). Equal values may still encode
    apart (`1`, `1.0` and `true` are equal): the signatures decide."""
    if _comparable(first) == _comparable(second):
        return True
    return any(word in c.arguments_raw for c in (*first, *second) for word in _NON_FINITE)


_NON_FINITE = ("NaN", "Infinity")
"""What an argument text holding a value no JSON number is (`json` reads them) must say."""


def _comparable(calls: tuple[Call, ...]) -> list[tuple[str, object]]:
    return [
        (c.name, c.arguments if c.json_valid else c.arguments_raw)
        for c in sorted(calls, key=lambda c: c.index)
    ]


def _streak_finding(streak: list[Step], signature: str) -> Finding | None:
    """A loop (LOOP_MIN or more steps) or a single repeat (two), else None."""
    if len(streak) < 2:
        return None  # most streaks: decoding the signature would be wasted
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


def _names(calls: tuple[Call, ...]) -> tuple[str, ...]:
    """The tools called, in call order: steps whose names differ cannot share a signature
    (JSON encodes different strings differently), so most steps need none."""
    if len(calls) == 1:
        return (calls[0].name,)
    return tuple(c.name for c in sorted(calls, key=lambda c: c.index))


def repeated_calls(run: Run) -> Iterator[Finding]:
    """One finding per streak of steps making exactly the same calls: `repeated_call` for
    LOOP_MIN or more, `repeated_call_once` for two (never both for one streak)."""
    streak: list[Step] = []
    names: tuple[str, ...] | None = None
    # The streak's signature, encoded only once a step may make the same calls (None: not yet).
    last: str | None = None
    for step in run.steps:
        if step.failed:
            continue  # a failed request says nothing about what the model called
        calls = step.calls
        called = _names(calls) if calls else None
        if called is not None and called == names and _may_match(streak[0].calls, calls):
            if last is None:
                last = _signature(streak[0].calls)
            if _signature(calls) == last:
                streak.append(step)
                continue
        if names is not None:
            finding = _streak_finding(streak, last or "")
            if finding is not None:
                yield finding
        streak, names, last = [step], called, None
    if names is not None:
        finding = _streak_finding(streak, last or "")
        if finding is not None:
            yield finding

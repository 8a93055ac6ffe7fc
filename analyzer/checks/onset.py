"""When a failure first shows in a run, and how many clean steps came before it.

Real hosts often answer the first request well and break from the second on, because only
then does the chat template render history (earlier calls, their ids and arguments, earlier
reasoning) and render it wrong. A finding that says "first at step 3 after 3 clean steps"
points the reader at the history rendering, not at the model or the tool parser alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analyzer.checks.records import Run, Step

StepTest = Callable[[Step], bool]


def onset(run: Run, upto: int, failed: StepTest, clean: StepTest) -> dict[str, Any]:
    """`first_step`: the first step up to `upto` where `failed` holds; `clean_steps_before`:
    how many steps before it `clean` held (steps that did the same thing right). Empty when
    no step up to `upto` failed."""
    before = 0
    for step in run.steps:
        if step.index > upto:
            break
        if failed(step):
            return {"first_step": step.index, "clean_steps_before": before}
        if clean(step):
            before += 1
    return {}


def previous_step(step: Step, run: Run) -> Step | None:
    """The step before `step` in its run, None for the first."""
    at = step.index - 1
    if 0 <= at < len(run.steps) and run.steps[at].index == at:
        return run.steps[at]  # steps are stored in index order from 0: no search
    earlier = [s for s in run.steps if s.index < step.index]
    return earlier[-1] if earlier else None

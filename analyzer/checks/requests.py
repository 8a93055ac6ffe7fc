"""Reading a run's requests once: each request's new messages only, and the call ids an
assistant message sent back.

A tool chain's request is the previous request plus one turn and its results, and the loader
hands consecutive steps the same message objects, so checks that follow the history walk
only what each request adds: linear in the conversation, not quadratic.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from analyzer.checks.records import Run, Step


def request_increments(run: Run) -> Iterator[tuple[Step, int]]:
    """Each step with the position of the first message its request adds to the previous
    request's; 0 when it does not extend that request (the first step, a new conversation,
    an edited history): then all of its messages are new, and what was read before does not
    carry over."""
    return zip(run.steps, run.request_starts, strict=True)


def call_ids(message: Mapping[str, Any]) -> list[str]:
    """The ids of the tool calls an (assistant) message carries, in order."""
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return []
    # A host that sent no id gets none back and its result answers "": both read as "".
    return [str(c.get("id") or "") for c in calls if isinstance(c, dict)]

"""What every strategy shares: the plan it returns and how tool failures are recognised."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from traces.sim.transcript import Call, Transcript
from traces.sim.voice import Voice

ToolSchemas = Mapping[str, Mapping[str, Any]]
"""Declared tools: name -> JSON Schema of the parameters, in declaration order."""

_ERROR_START = re.compile(
    r"^\s*(?:\[?error\]?|tool error|failed|failure|exception|traceback|invalid|unknown tool)\b",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"\"([^\"\n]{1,200})\"|“([^”\n]{1,200})”")
_BACKTICKED = re.compile(r"`([^`\n]{1,200})`")


@dataclass(frozen=True, slots=True)
class Plan:
    """The next assistant turn before ids and wire encoding: calls, or a final answer."""

    reasoning: str
    content: str = ""
    calls: tuple[tuple[str, dict[str, Any]], ...] = field(default=())


class Strategy(Protocol):
    """A way of working through one kind of task."""

    name: str

    def failed(self, call: Call) -> bool:
        """Whether the result of `call` reports a failure (missing results count as failed)."""
        ...

    def next_plan(self, transcript: Transcript, voice: Voice) -> Plan:
        """The next turn (the policy has already capped consecutive failures)."""
        ...


def looks_like_error(text: str | None) -> bool:
    """Heuristic for free-text tool results: an error prefix, or a JSON object with `error`."""
    if text is None:
        return True
    if _ERROR_START.match(text):
        return True
    stripped = text.lstrip()
    if stripped.startswith("{") and '"error"' in stripped:
        try:
            data = json.loads(stripped)
        except ValueError:
            return False
        return isinstance(data, dict) and bool(data.get("error"))
    return False


def quoted_phrase(text: str) -> str | None:
    """The first double-quoted phrase of `text` (straight or curly quotes)."""
    match = _QUOTED.search(text)
    if match is None:
        return None
    return match.group(1) or match.group(2)


def backticked(text: str) -> str | None:
    """The first `backticked` phrase of `text`."""
    match = _BACKTICKED.search(text)
    return match.group(1) if match else None


def consecutive_failures(transcript: Transcript, strategy: Strategy) -> int:
    """How many of the latest turns failed entirely; stops at the first turn with a success."""
    count = 0
    for turn in reversed(transcript.turns):
        if all(strategy.failed(call) for call in turn.calls):
            count += 1
        else:
            break
    return count


def last_error(transcript: Transcript) -> str:
    """The most recent result text of the last turn (what a failed call said)."""
    if not transcript.turns:
        return ""
    for call in reversed(transcript.turns[-1].calls):
        if call.result is not None:
            return call.result
    return "no result was returned"

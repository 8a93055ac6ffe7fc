"""A read-only view of a request's conversation, shaped for the policy.

The simulator is stateless: everything the policy knows comes from the messages of the
request. This module pairs each tool call since the last user message with its result,
once per request and in one pass, so strategies never rescan the raw messages.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from traces.sim.templates.history import message_text

_MISSING = object()


@dataclass(slots=True)
class Call:
    """One tool call the assistant made, with the result the client sent back (if any)."""

    id: str
    name: str
    raw_arguments: Any
    result: str | None = None
    _parsed_args: Any = field(default=_MISSING, repr=False)
    _parsed_result: Any = field(default=_MISSING, repr=False)

    def arguments(self) -> dict[str, Any]:
        """Arguments as an object; strings are parsed, anything unparsable yields {}."""
        if self._parsed_args is _MISSING:
            value = self.raw_arguments
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    value = None
            self._parsed_args = value if isinstance(value, dict) else {}
        parsed: dict[str, Any] = self._parsed_args
        return parsed

    def result_json(self) -> Any:
        """The result parsed as JSON, or None when it is absent or not JSON."""
        if self._parsed_result is _MISSING:
            parsed: Any = None
            if self.result is not None:
                try:
                    parsed = json.loads(self.result)
                except ValueError:
                    parsed = None
            self._parsed_result = parsed
        return self._parsed_result


@dataclass(slots=True)
class Turn:
    """One assistant message with tool calls, and their results."""

    calls: list[Call]

    def names(self) -> set[str]:
        """Names of the tools called in this turn."""
        return {call.name for call in self.calls}


@dataclass(slots=True)
class Transcript:
    """What the policy reads from a request."""

    user_text: str
    """Content of the last user message ("" when there is none)."""
    turns: list[Turn]
    """Assistant tool-call turns after the last user message, oldest first."""
    turn_index: int
    """Number of assistant messages in the whole request: the index of the turn to produce."""
    content_hash: str
    """Digest of every message's role and content; seeds the wording of the next turn."""


def _calls_of(message: Mapping[str, Any]) -> list[Call]:
    raw = message.get("tool_calls")
    calls: list[Call] = []
    if not isinstance(raw, list):
        return calls
    for item in raw:
        # dict, not Mapping: decoded JSON is always a dict and ABC checks are slow per turn.
        if not isinstance(item, dict):
            continue
        function = item.get("function")
        if not isinstance(function, dict):
            continue
        calls.append(
            Call(
                id=str(item.get("id", "")),
                name=str(function.get("name", "")),
                raw_arguments=function.get("arguments", ""),
            )
        )
    return calls


def _attach(turn: Turn, tool_call_id: Any, text: str) -> None:
    # Match by id first; a provider that rewrites ids still gets its results paired in order.
    for call in turn.calls:
        if call.result is None and call.id == tool_call_id:
            call.result = text
            return
    for call in turn.calls:
        if call.result is None:
            call.result = text
            return


def read_transcript(messages: Sequence[Mapping[str, Any]]) -> Transcript:
    """Build the policy's view of `messages` in two linear passes over the conversation."""
    last_user = -1
    assistants = 0
    hashed: list[str] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "user":
            last_user = index
        elif role == "assistant":
            assistants += 1
        hashed.append(f"{role}\x00{message_text(message.get('content'))}")
    # One join and one update: far cheaper than several digest calls per message.
    material = "\x01".join(hashed).encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(material, digest_size=16)

    turns: list[Turn] = []
    current: Turn | None = None
    for message in messages[last_user + 1 :]:
        role = message.get("role")
        if role == "assistant":
            calls = _calls_of(message)
            current = Turn(calls) if calls else None
            if current is not None:
                turns.append(current)
        elif role == "tool" and current is not None:
            _attach(current, message.get("tool_call_id"), message_text(message.get("content")))

    user_text = message_text(messages[last_user].get("content")) if last_user >= 0 else ""
    return Transcript(
        user_text=user_text,
        turns=turns,
        turn_index=assistants,
        content_hash=digest.hexdigest(),
    )

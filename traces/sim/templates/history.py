"""Reading a request's messages the way a host's chat template does.

Text of a content value, the reasoning of an assistant turn from the places a dialect reads
(a message field, `reasoning_details`, an inline `<think>` block, harmony channels), and the
tool calls of a turn. Everything here is linear in the message it reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from traces.wire_forms import ReasoningLocation

_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
_HARMONY_ANALYSIS = "<|channel|>analysis<|message|>"
_HARMONY_END = "<|end|>"
_HARMONY_FINAL = "<|channel|>final<|message|>"


def message_text(content: Any) -> str:
    """Text of a message `content`: a string, None, or a list of `{"type": "text"}` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return str(content)


def split_think(content: str) -> tuple[str | None, str]:
    """Split a leading `<think>...</think>` block off `content`: (reasoning or None, rest)."""
    stripped = content.lstrip()
    if not stripped.startswith(_THINK_OPEN):
        return None, content
    end = stripped.find(_THINK_CLOSE)
    if end < 0:
        # An unterminated block is all reasoning; the model never reached its answer.
        return stripped[len(_THINK_OPEN) :].strip(), ""
    reasoning = stripped[len(_THINK_OPEN) : end].strip()
    return reasoning, stripped[end + len(_THINK_CLOSE) :].lstrip()


def split_harmony(content: str) -> tuple[str | None, str]:
    """Split a leading harmony analysis message off `content`: (reasoning or None, answer).

    The answer is the text of the final channel when there is one, else what follows the
    analysis message.
    """
    if not content.startswith(_HARMONY_ANALYSIS):
        return None, content
    body = content[len(_HARMONY_ANALYSIS) :]
    end = body.find(_HARMONY_END)
    if end < 0:
        return body or None, ""
    rest = body[end + len(_HARMONY_END) :]
    final = rest.find(_HARMONY_FINAL)
    answer = rest[final + len(_HARMONY_FINAL) :] if final >= 0 else rest
    return body[:end] or None, answer


def details_text(value: Any) -> str | None:
    """Text of a `reasoning_details` list: its `reasoning.text` entries (else summaries)."""
    if not isinstance(value, list):
        return None
    texts = [str(d.get("text") or "") for d in value if isinstance(d, dict) and "text" in d]
    if not any(texts):
        texts = [str(d.get("summary") or "") for d in value if isinstance(d, dict)]
    joined = "".join(texts)
    return joined or None


def _string_field(name: str) -> Callable[[Mapping[str, Any]], str | None]:
    def read(message: Mapping[str, Any]) -> str | None:
        value = message.get(name)
        return value if isinstance(value, str) and value else None

    return read


_FIELD_READERS: dict[ReasoningLocation, Callable[[Mapping[str, Any]], str | None]] = {
    "reasoning_content": _string_field("reasoning_content"),
    "reasoning": _string_field("reasoning"),
    "reasoning_details": lambda message: details_text(message.get("reasoning_details")),
}
"""Locations that are message fields; the others live inline in `content`."""

_INLINE_SPLITTERS: dict[ReasoningLocation, Callable[[str], tuple[str | None, str]]] = {
    "think_tag": split_think,
    "harmony": split_harmony,
}


def read_reasoning(
    message: Mapping[str, Any], locations: Sequence[ReasoningLocation]
) -> tuple[str | None, str]:
    """(reasoning, content) of an assistant message as a host reading `locations` sees it.

    The first location (in the dialect's order) that holds reasoning wins. Inline blocks the
    host reads are always cut out of the content, so a kept block is rendered once, in its
    place, and a dropped one vanishes. Reasoning anywhere else is simply not seen.
    """
    content = message_text(message.get("content"))
    found: str | None = None
    for location in locations:
        splitter = _INLINE_SPLITTERS.get(location)
        if splitter is not None:
            text, content = splitter(content)
        else:
            text = _FIELD_READERS[location](message)
        if found is None and text:
            found = text
    return found, content


@dataclass(slots=True)  # not frozen: built for every call of every request, see base.py
class HistoryCall:
    """One tool call as it appears in a message (or in the turn being generated)."""

    id: str
    name: str
    arguments: Any
    """As sent: a JSON string (OpenAI form) or an object."""


def calls_of(message: Mapping[str, Any]) -> list[HistoryCall]:
    """The function tool calls of an assistant message, in order."""
    raw = message.get("tool_calls")
    calls: list[HistoryCall] = []
    if not isinstance(raw, list):
        return calls
    # Plain dict checks: request bodies are decoded JSON, and ABC isinstance checks are slow
    # in a loop that runs over every turn of every request.
    for call in raw:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            calls.append(
                HistoryCall(
                    id=str(call.get("id") or ""),
                    name=str(function.get("name", "")),
                    arguments=function.get("arguments", ""),
                )
            )
    return calls


def arguments_text(arguments: Any) -> str:
    """Arguments as JSON text: strings verbatim (as the real templates insert them)."""
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


def arguments_object(arguments: Any) -> dict[str, Any] | None:
    """Arguments as an object, parsing JSON text; None when they are not an object."""
    value = arguments
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


@lru_cache(maxsize=1 << 14)
def _items_of_text(text: str) -> tuple[tuple[str, Any], ...] | None:
    parsed = arguments_object(text)
    return None if parsed is None else tuple(parsed.items())


def arguments_items(arguments: Any) -> tuple[tuple[str, Any], ...] | None:
    """(key, value) pairs of object arguments, None when they are not an object.

    For templates that spell out each argument (MiniMax, GLM): the same history arguments
    come back on every later request, so parsing them once keeps rendering linear.
    """
    if isinstance(arguments, str):
        return _items_of_text(arguments)
    return tuple(arguments.items()) if isinstance(arguments, dict) else None


def last_user_index(messages: Sequence[Mapping[str, Any]]) -> int:
    """Index of the last user message, -1 when there is none."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    return -1


def last_assistant_index(messages: Sequence[Mapping[str, Any]]) -> int:
    """Index of the last assistant message, -1 when there is none."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "assistant":
            return index
    return -1


def last_final_answer_index(messages: Sequence[Mapping[str, Any]]) -> int:
    """Index of the last assistant message without tool calls, -1 when there is none."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") == "assistant" and not message.get("tool_calls"):
            return index
    return -1

"""Where a dialect puts reasoning in a response: message fields, or inline in `content`.

Field locations carry the text in a message (or delta) field; inline locations compose it
into the content (`<think>` blocks, harmony channels). Driven by `Dialect.reasoning_out` and
`Dialect.reasoning_copies`, so a new host is new data, not new code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from traces.dialects import Dialect
from traces.sim.templates.gpt_oss import analysis, final
from traces.wire_forms import ReasoningLocation


def think_block(reasoning: str) -> str:
    """Reasoning as an inline block at the start of content (MiniMax, raw Qwen3, Groq raw)."""
    return f"<think>\n{reasoning}\n</think>\n\n"


def _think(reasoning: str, content: str) -> str:
    return (think_block(reasoning) if reasoning else "") + content


def _harmony(reasoning: str, content: str) -> str:
    # A tool turn has no final message: the calls travel as structured tool_calls.
    text = analysis(reasoning) if reasoning else ""
    if content.startswith("<|start|>"):
        return text + content  # already harmony messages (calls leaked raw): as generated
    if content:
        text += ("<|start|>assistant" if text else "") + final(content)
    return text


_FIELDS: dict[ReasoningLocation, Callable[[str], Any]] = {
    "reasoning_content": lambda text: text,
    "reasoning": lambda text: text,
    "reasoning_details": lambda text: [{"type": "reasoning.text", "text": text}],
}
"""Field locations and the value each carries for a piece of reasoning."""

_INLINE: dict[ReasoningLocation, Callable[[str, str], str]] = {
    "think_tag": _think,
    "harmony": _harmony,
}
"""Inline locations and how each composes reasoning and answer into content."""


def is_inline(dialect: Dialect) -> bool:
    """Whether the dialect sends reasoning inside `content` rather than in a field."""
    return dialect.reasoning_out in _INLINE


def reasoning_fields(dialect: Dialect, reasoning: str) -> dict[str, Any]:
    """The message/delta fields carrying `reasoning` (empty when it is inline or empty)."""
    if not reasoning:
        return {}
    fields: dict[str, Any] = {}
    for location in (dialect.reasoning_out, *dialect.reasoning_copies):
        make = _FIELDS.get(location)
        if make is not None:
            fields[location] = make(reasoning)
    return fields


def response_content(dialect: Dialect, reasoning: str, content: str) -> str:
    """The `content` text: the answer, with the reasoning composed in for inline dialects."""
    compose = _INLINE.get(dialect.reasoning_out)
    return compose(reasoning, content) if compose is not None else content

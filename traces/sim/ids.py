"""Tool-call ids in each host's style.

OpenAI-style hosts mint opaque `call_<hex>` ids; Kimi's models write their own,
`functions.NAME:IDX`, where IDX counts every call of the conversation so far, and Kimi's
template puts those ids back into the prompt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from traces.wire_forms import IdStyle


def openai_id(material: str) -> str:
    """`call_` + 24 hex digits derived from `material` (stable for the same material)."""
    return "call_" + hashlib.sha256(material.encode()).hexdigest()[:24]


def kimi_id(name: str, index: int) -> str:
    """Kimi's `functions.NAME:IDX`."""
    return f"functions.{name}:{index}"


def history_call_count(messages: Sequence[Mapping[str, Any]]) -> int:
    """Tool calls made by assistant messages of the conversation (Kimi's next index)."""
    total = 0
    for message in messages:
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        if isinstance(calls, list):
            total += len(calls)
    return total


def last_history_id(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """Id of the most recent tool call in the conversation, None when there is none."""
    for index in range(len(messages) - 1, -1, -1):
        calls = messages[index].get("tool_calls")
        if messages[index].get("role") == "assistant" and isinstance(calls, list):
            for call in reversed(calls):
                if isinstance(call, dict) and isinstance(call.get("id"), str) and call["id"]:
                    return str(call["id"])
    return None


IdMaker = Callable[[str, str, int], str]
"""(opaque id the policy minted, function name, global call index) -> id in a style."""

ID_STYLES: dict[IdStyle, IdMaker] = {
    "openai": lambda minted, name, index: minted,
    "kimi": lambda minted, name, index: kimi_id(name, index),
}
"""How each id style names a call."""

OTHER_STYLE: dict[IdStyle, IdStyle] = {"openai": "kimi", "kimi": "openai"}
"""The style a host that rewrites ids switches to (the rewritten_ids fault)."""

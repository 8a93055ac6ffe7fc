"""Hosts that insist on interleaved thinking: the reasoning of the current tool chain must come
back, or the request is refused (DeepSeek's thinking mode answers HTTP 400).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from traces.sim.templates.history import last_user_index, read_reasoning
from traces.wire_forms import ReasoningLocation

DOCS_URL = "https://api-docs.deepseek.com/guides/thinking_mode#tool-calls"


def missing_reasoning_index(
    messages: Sequence[Mapping[str, Any]], reads: Sequence[ReasoningLocation]
) -> int | None:
    """Index of the first assistant tool-call message after the last user message that has
    no reasoning in any location the host reads; None when every one has it.
    """
    for index in range(last_user_index(messages) + 1, len(messages)):
        message = messages[index]
        if message.get("role") != "assistant" or not message.get("tool_calls"):
            continue
        if read_reasoning(message, reads)[0] is None:
            return index
    return None


def reasoning_required_error(index: int, field: str) -> dict[str, Any]:
    """DeepSeek's 400 body, naming the message and the field the host wanted."""
    message = (
        f"Missing `{field}` field in the assistant message at message index {index}. "
        f"For more information, please refer to {DOCS_URL}"
    )
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_request_error",
        }
    }

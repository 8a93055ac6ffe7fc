"""Building the assistant message that goes back to the model in the next request.

Interleaved thinking: inside a tool chain the model must see its own earlier reasoning, in
the field the serving stack reads. By default that is the field the reasoning arrived in.
"""

from __future__ import annotations

from typing import Any, Literal

from traces.normalize import Reading

ReplayMode = Literal["same", "drop", "reasoning_content", "reasoning", "think_tag"]
"""Where reasoning goes back: the field it came from, nowhere, or a named field."""


def replay_message(
    message: dict[str, Any], reading: Reading, mode: ReplayMode = "same"
) -> dict[str, Any]:
    """The assistant turn to append to the conversation, reasoning placed per `mode`."""
    out: dict[str, Any] = {"role": "assistant", "content": reading.content}
    if reading.tool_calls:
        # Arguments and ids go back exactly as received: rewriting them is a dialect choice.
        out["tool_calls"] = [
            {
                "id": call.get("id"),
                "type": call.get("type") or "function",
                "function": {
                    "name": (call.get("function") or {}).get("name"),
                    "arguments": (call.get("function") or {}).get("arguments"),
                },
            }
            for call in message.get("tool_calls") or []
        ]
    reasoning = reading.reasoning
    if not reasoning or mode == "drop":
        return out
    target = reading.reasoning_source if mode == "same" else mode
    if target in ("reasoning_content", "reasoning"):
        out[target] = reasoning
    elif target == "reasoning_details":
        out["reasoning_details"] = message.get("reasoning_details")
    elif target == "think_tag" and reading.reasoning_source == "think_tag":
        out["content"] = message.get("content")  # verbatim, as MiniMax asks
    elif target == "think_tag":
        out["content"] = f"<think>{reasoning}</think>{reading.content or ''}"
    elif target == "harmony":
        out["reasoning"] = reasoning
    return out

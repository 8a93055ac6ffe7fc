"""Building the assistant message that goes back to the model in the next request.

Interleaved thinking: inside a tool chain the model must see its own earlier reasoning, in
the field the serving stack reads. By default that is the field the reasoning arrived in; a
provider profile (or `--reasoning-replay`) can name another, or drop it for experiments.
Tool-call ids and arguments go back as received unless the profile says the model family
expects another form (Kimi: `functions.NAME:IDX` ids; some templates want object arguments).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from traces.dialects import Dialect
from traces.normalize import Reading

ReasoningReplay = Literal[
    "same", "drop", "reasoning_content", "reasoning", "reasoning_details", "think_tag"
]
"""Where reasoning goes back: the field it came from, nowhere, or a named location."""


class ReplayPolicy(BaseModel):
    """How each assistant turn is sent back."""

    model_config = ConfigDict(frozen=True)

    reasoning: ReasoningReplay = Field(default="same", description="Where reasoning goes back.")
    ids: Literal["as_received", "kimi"] = Field(
        default="as_received", description="Tool-call ids untouched, or as functions.NAME:IDX."
    )
    arguments: Literal["string", "object"] = Field(
        default="string", description="Arguments as JSON strings or as objects."
    )

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> ReplayPolicy:
        """The policy a host speaking `dialect` needs."""
        reasoning: ReasoningReplay = (
            "reasoning" if dialect.reasoning_back == "harmony" else dialect.reasoning_back
        )
        return cls(reasoning=reasoning, ids=dialect.ids_back, arguments=dialect.arguments_back)


def parse_replay_option(value: str) -> ReasoningReplay | None:
    """`--reasoning-replay keep|drop|FIELD`: None for keep (the profile's choice)."""
    if value == "keep":
        return None
    allowed = ("drop", "reasoning_content", "reasoning", "reasoning_details", "think_tag")
    if value not in allowed:
        raise ValueError(f"must be keep, {', '.join(allowed)}")
    return value  # type: ignore[return-value]


def kimi_id(name: str, counter: int) -> str:
    """Kimi's tool-call id: `functions.NAME:IDX`, IDX counting calls across the conversation."""
    return f"functions.{name}:{counter}"


def replay_message(
    message: dict[str, Any],
    reading: Reading,
    policy: ReplayPolicy | None = None,
    calls_so_far: int = 0,
) -> tuple[dict[str, Any], list[str | None]]:
    """The assistant turn to append, and the id each tool result must answer with.

    `calls_so_far` is the number of tool calls earlier in the conversation (Kimi ids
    number calls globally).
    """
    policy = policy or ReplayPolicy()
    out: dict[str, Any] = {"role": "assistant", "content": reading.content}
    ids: list[str | None] = []
    if reading.tool_calls:
        calls = []
        for offset, (raw, record) in enumerate(
            zip(message.get("tool_calls") or [], reading.tool_calls, strict=False)
        ):
            function = raw.get("function") or {}
            call_id = (
                kimi_id(record.name, calls_so_far + offset)
                if policy.ids == "kimi"
                else raw.get("id")
            )
            ids.append(call_id)
            calls.append(
                {
                    "id": call_id,
                    "type": raw.get("type") or "function",
                    "function": {
                        "name": function.get("name"),
                        "arguments": _arguments(
                            function.get("arguments"), record.json_valid, policy.arguments
                        ),
                    },
                }
            )
        out["tool_calls"] = calls
    _place_reasoning(out, message, reading, policy.reasoning)
    return out, ids


def _arguments(raw: Any, json_valid: bool, form: str) -> Any:
    if form == "object" and isinstance(raw, str) and json_valid:
        return json.loads(raw)
    if form == "string" and isinstance(raw, dict):
        return json.dumps(raw, ensure_ascii=False)
    return raw  # invalid JSON goes back exactly as the model wrote it


def _place_reasoning(
    out: dict[str, Any], message: dict[str, Any], reading: Reading, mode: ReasoningReplay
) -> None:
    reasoning = reading.reasoning
    if not reasoning or mode == "drop":
        return
    source = reading.reasoning_source
    if mode == "same" and source in ("reasoning_content", "reasoning", "reasoning_details"):
        # Every field it arrived in goes back as it arrived (OpenRouter sends two).
        for field in ("reasoning_content", "reasoning", "reasoning_details"):
            if message.get(field):
                out[field] = message[field]
        return
    target = source if mode == "same" else mode
    if target == "harmony":
        target = "reasoning"
    if target in ("reasoning_content", "reasoning"):
        out[target] = reasoning
    elif target == "reasoning_details":
        details = message.get("reasoning_details")
        # Routers ask for the complete details (signatures, encrypted parts) back untouched.
        out["reasoning_details"] = (
            details
            if isinstance(details, list) and details
            else [{"type": "reasoning.text", "text": reasoning}]
        )
    elif target == "think_tag" and source == "think_tag":
        out["content"] = message.get("content")  # verbatim, as MiniMax asks
    elif target == "think_tag":
        out["content"] = f"<think>{reasoning}</think>{reading.content or ''}"

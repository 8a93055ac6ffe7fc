"""Building the assistant message that goes back to the model in the next request.

Interleaved thinking: inside a tool chain the model must see its own earlier reasoning, in
the field the serving stack reads. By default that is the field the reasoning arrived in; a
provider profile (or `--reasoning-replay`) can name another, or drop it for experiments.
Tool-call ids go back in the form the model family's template renders (Kimi:
`functions.NAME:IDX`, whoever served it), unless the host asks otherwise; arguments go back
in the host's form (some templates want objects).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from traces.dialects import Dialect
from traces.families import Family, family_named, resolve_family
from traces.normalize import Reading
from traces.wire_forms import (
    REASONING_FIELDS,
    REPLAY_LOCATIONS,
    ArgumentForm,
    IdsBack,
    ReplayLocation,
)

ReasoningReplay = Literal["same", "drop"] | ReplayLocation
"""Where reasoning goes back: the field it came from, nowhere, or a named location."""


class ReplayPolicy(BaseModel):
    """How each assistant turn is sent back."""

    model_config = ConfigDict(frozen=True)

    reasoning: ReasoningReplay = Field(default="same", description="Where reasoning goes back.")
    ids: IdsBack = Field(
        default="as_received", description="Tool-call ids untouched, or as functions.NAME:IDX."
    )
    arguments: ArgumentForm = Field(
        default="string", description="Arguments as JSON strings or as objects."
    )

    @classmethod
    def for_dialect(cls, dialect: Dialect | None, model: str | None = None) -> ReplayPolicy:
        """The policy for `model` served by a host speaking `dialect` (None: a host of unknown
        dialect, which gets reasoning where it came from). The host decides where reasoning
        and arguments go and may insist on an id form; otherwise the ids follow the family
        the model id names (the host's own family when it names none)."""
        if dialect is None:
            return cls(ids=_family_ids(family_named(model)))
        ids = dialect.ids_back or _family_ids(resolve_family(model, dialect.family))
        return cls(reasoning=reasoning_back(dialect), ids=ids, arguments=dialect.arguments_back)


def reasoning_back(dialect: Dialect) -> ReplayLocation:
    """Where a host speaking `dialect` reads history reasoning (harmony goes back as
    `reasoning`: a client writes no channels)."""
    return "reasoning" if dialect.reasoning_back == "harmony" else dialect.reasoning_back


def _family_ids(family: Family | None) -> IdsBack:
    # A family whose template renders ids needs them in its own form; others never see them.
    return "kimi" if family is not None and family.id_style == "kimi" else "as_received"


def parse_replay_option(value: str) -> ReasoningReplay | None:
    """`--reasoning-replay keep|drop|FIELD`: None for keep (the profile's choice)."""
    if value == "keep":
        return None
    allowed = ("drop", *REPLAY_LOCATIONS)
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
    if mode == "same" and source in REASONING_FIELDS:
        # Every field it arrived in goes back as it arrived (OpenRouter sends two).
        for field in REASONING_FIELDS:
            if message.get(field):
                out[field] = message[field]
        return
    target = source if mode == "same" else mode
    if target == "harmony":
        target = "reasoning"
    elif target == "think_close":
        # A block whose opening tag the prompt held goes back whole, never half-open.
        target = "think_tag"
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

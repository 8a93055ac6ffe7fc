"""The probe set: fixed conversations that make a host's template and parser show themselves.

Each template probe is one request. Pairs differ in exactly one thing (tools declared or not,
reasoning in the history or not, Kimi-style or `call_…` ids, arguments as strings or
objects), so the difference of their `prompt_tokens` is what the host's template did with
that one thing. The parameter probes each set one sampling parameter (`max_tokens`, `stop`,
`n`, `logprobs`, `response_format`, `seed` with temperature 0) on a short request, so the
answer shows whether the host honoured it, refused it, or silently ignored it. The set is
versioned: a change to any conversation is a new version, and reports compare runs of one
version only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from traces.model import message_hash
from traces.wire_forms import ArgumentForm, IdStyle, ReplayLocation

PROBE_SET_VERSION = "2"
"""Version of the conversations below; bump it whenever one of them changes."""


SECRET_CODE = "7316"
"""The code the planted-secret probe hides in its history reasoning (and nowhere else)."""

_SYSTEM = "You are a careful assistant. Use the tools when they help, and answer briefly."
_WEATHER_QUESTION = "What is the weather in Lyon right now, and what time is it there?"
_WEATHER_REASONING = (
    "The user wants the current weather and the local time in Lyon. I'll call get_weather "
    "for Lyon first, then get_time."
)
_WEATHER_RESULT = '{"city": "Lyon", "sky": "light rain", "temperature_c": 14}'
_VAULT_QUESTION = (
    "Pick a 4-digit code for the vault and keep it to yourself for now: do not put it in any "
    "tool call. Seal the vault with seal_vault, then tell me the code you picked."
)
_VAULT_REASONING = (
    f"I'll pick a code for the vault: the vault code is {SECRET_CODE}. It must stay out of "
    "every tool call, and seal_vault only takes a label, so I'll seal the vault now and tell "
    "the user the code afterwards."
)
_VAULT_RESULT = '{"sealed": true, "label": "probe"}'
_OPENAI_IDS = {"get_weather": "call_7d1f3c9a2b6e4f08a5c3d2e1", "seal_vault": "call_3b8e2f6d9c1a"}


def _function(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            },
        },
    }


WEATHER_TOOLS = [
    _function(
        "get_weather",
        "Current weather of a city.",
        {"city": {"type": "string", "description": "City name."}},
    ),
    _function(
        "get_time",
        "Current local time of a city.",
        {"city": {"type": "string", "description": "City name."}},
    ),
]
VAULT_TOOLS = [
    _function(
        "seal_vault",
        "Seal the vault. It takes only a label, never the code.",
        {"label": {"type": "string", "description": "A label for the sealed vault."}},
    )
]


@dataclass(frozen=True)
class Wire:
    """How a conversation's history goes on the wire for one target."""

    reasoning: ReplayLocation = "reasoning_content"
    """Where history reasoning is placed (the field the host reads)."""
    ids: IdStyle = "openai"
    """Tool-call id style of the target, used by the probes that follow the target's way."""
    arguments: ArgumentForm = "string"
    """Argument form of the target, used by the probes that follow the target's way."""


@dataclass(frozen=True)
class Turn:
    """One earlier assistant tool-call turn and the result it got, wire-neutral."""

    reasoning: str | None
    tool: str
    arguments: dict[str, Any]
    result: str
    ids: IdStyle | None = None
    """Fixed id style; None follows the target's (`Wire.ids`)."""
    arguments_form: ArgumentForm | None = None
    """Fixed argument form; None follows the target's (`Wire.arguments`)."""


@dataclass(frozen=True)
class Conversation:
    """A probe's request before it is put on the wire."""

    user: str
    tools: list[dict[str, Any]] | None
    history: Turn | None = None


@dataclass(frozen=True)
class ProbeRequest:
    """What one probe sends: chat messages and tools (params come from the target)."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None


@dataclass(frozen=True)
class Probe:
    """One probe: a name, what it is for, and what a difference from its pair means."""

    name: str
    purpose: str
    difference: str
    """What it means when this probe's value differs from its pair's or other providers'."""
    conversation: Conversation
    pair: str | None = None
    """The probe this one differs from in exactly one thing (its baseline)."""
    expect_answer: str | None = None
    """Text the final answer must contain (the planted secret)."""
    parameter: str | None = None
    """The sampling parameter a parameter probe tests (None: a template probe)."""
    params: dict[str, Any] | None = None
    """Request parameters the probe sets, over the plan's and the target's."""
    repeats: int = 1
    """Times the same request is sent, one step each (to compare the answers)."""

    @property
    def raw(self) -> bool:
        """Whether the probe is also sent rendered client-side to `/completions` (template
        probes only: a parameter is the chat endpoint's to honour)."""
        return self.parameter is None

    def request(self, wire: Wire) -> ProbeRequest:
        """The messages and tools of this probe for a target speaking `wire`."""
        return ProbeRequest(_messages(self.conversation, wire), self.conversation.tools)

    def digest(self) -> str:
        """sha256 of the probe's definition: tells edited probes apart in stored runs."""
        material = json.dumps(
            [
                PROBE_SET_VERSION,
                self.name,
                [message_hash(m) for m in self.request(Wire()).messages],
                self.conversation.tools,
                self.params,
                self.repeats,
            ],
            sort_keys=True,
        )
        return hashlib.sha256(material.encode()).hexdigest()


def _call_id(style: IdStyle, tool: str) -> str:
    # Kimi numbers calls across the conversation; each probe history has exactly one call.
    return f"functions.{tool}:0" if style == "kimi" else _OPENAI_IDS[tool]


def place_reasoning(
    message: dict[str, Any], reasoning: str, place: ReplayLocation
) -> dict[str, Any]:
    """`message` with `reasoning` where a host reading `place` looks for it."""
    if place == "think_tag":
        return {**message, "content": f"<think>{reasoning}</think>{message.get('content') or ''}"}
    if place == "reasoning_details":
        return {**message, "reasoning_details": [{"type": "reasoning.text", "text": reasoning}]}
    return {**message, place: reasoning}


def _messages(conversation: Conversation, wire: Wire) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": conversation.user},
    ]
    turn = conversation.history
    if turn is None:
        return messages
    call_id = _call_id(turn.ids or wire.ids, turn.tool)
    form = turn.arguments_form or wire.arguments
    arguments: Any = turn.arguments if form == "object" else json.dumps(turn.arguments)
    assistant: dict[str, Any] = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": turn.tool, "arguments": arguments},
            }
        ],
    }
    if turn.reasoning:
        assistant = place_reasoning(assistant, turn.reasoning, wire.reasoning)
    messages.append(assistant)
    messages.append({"role": "tool", "tool_call_id": call_id, "content": turn.result})
    return messages


def _weather_turn(
    *,
    reasoning: bool = True,
    ids: IdStyle = "openai",
    arguments: ArgumentForm = "string",
) -> Turn:
    return Turn(
        reasoning=_WEATHER_REASONING if reasoning else None,
        tool="get_weather",
        arguments={"city": "Lyon"},
        result=_WEATHER_RESULT,
        ids=ids,
        arguments_form=arguments,
    )


TEMPLATE_PROBES: list[Probe] = [
    Probe(
        name="plain",
        purpose="Baseline: a system and a user message, no tools.",
        difference="Another count means another template or tokenizer, or a hidden system "
        "prompt the host adds.",
        conversation=Conversation(_WEATHER_QUESTION, None),
    ),
    Probe(
        name="tools",
        purpose="The same request with two tools declared: what the tool declarations cost.",
        difference="The template renders tool declarations differently (or not at all); the "
        "id style of the call the model makes shows whether the host rewrites ids.",
        conversation=Conversation(_WEATHER_QUESTION, WEATHER_TOOLS),
        pair="plain",
    ),
    Probe(
        name="history_reasoning",
        purpose="A tool history whose assistant turn carries reasoning (sent where the host "
        "reads it), `call_…` ids, arguments as a JSON string.",
        difference="Baseline of the history pairs.",
        conversation=Conversation(_WEATHER_QUESTION, WEATHER_TOOLS, _weather_turn()),
    ),
    Probe(
        name="history_no_reasoning",
        purpose="The same history without the reasoning.",
        difference="history_reasoning minus this is the reasoning the host counts; 0 means "
        "the reasoning sent back never reaches the model; a 400 means the host requires it.",
        conversation=Conversation(_WEATHER_QUESTION, WEATHER_TOOLS, _weather_turn(reasoning=False)),
        pair="history_reasoning",
    ),
    Probe(
        name="history_kimi_ids",
        purpose="The same history with Kimi-style `functions.NAME:IDX` ids.",
        difference="A non-zero difference means the template renders ids (Kimi does); 0 means "
        "ids never reach the model or the host rewrites them first; a 400 means it rejects "
        "them.",
        conversation=Conversation(_WEATHER_QUESTION, WEATHER_TOOLS, _weather_turn(ids="kimi")),
        pair="history_reasoning",
    ),
    Probe(
        name="history_object_args",
        purpose="The same history with arguments as a JSON object instead of a string.",
        difference="A 400 means the host rejects object arguments; a non-zero difference "
        "means the template renders the two forms differently.",
        conversation=Conversation(
            _WEATHER_QUESTION, WEATHER_TOOLS, _weather_turn(arguments="object")
        ),
        pair="history_reasoning",
    ),
    Probe(
        name="planted_secret",
        purpose="The code exists only in an earlier turn's reasoning; after the tool result "
        "the model must state it. Sent the target's way (reasoning field, ids, arguments).",
        difference="A wrong or missing code means the reasoning sent back never reached the "
        "model (dropped by the host), even when prompt_tokens say it was counted.",
        conversation=Conversation(
            _VAULT_QUESTION,
            VAULT_TOOLS,
            Turn(
                reasoning=_VAULT_REASONING,
                tool="seal_vault",
                arguments={"label": "probe"},
                result=_VAULT_RESULT,
            ),
        ),
        expect_answer=SECRET_CODE,
    ),
]
"""The template probes: paired conversations whose `prompt_tokens` fingerprint the host."""

CITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}
"""The schema of the `json_schema` probe's answer."""

MAX_TOKENS_CAP = 16
"""The budget of the `max_tokens` probe: far below the answer it asks for."""

_LONG_ANSWER = "Count from one to two hundred in words, separated by commas."
_STOP_LINE = "Reply with exactly this line and nothing else: alpha bravo charlie delta echo"
_CITY = (
    'Which city is the capital of France? Answer as a JSON object with the keys "city" and '
    '"country".'
)

PARAMETER_PROBES: list[Probe] = [
    Probe(
        name="max_tokens",
        purpose=f"A long answer asked for with max_tokens {MAX_TOKENS_CAP}.",
        difference="completion_tokens above the cap mean the host ignored max_tokens.",
        conversation=Conversation(_LONG_ANSWER, None),
        parameter="max_tokens",
        params={"max_tokens": MAX_TOKENS_CAP},
    ),
    Probe(
        name="stop",
        purpose="An answer that must contain `charlie`, with stop [`charlie`].",
        difference="`charlie` in the answer means the host ignored stop.",
        conversation=Conversation(_STOP_LINE, None),
        parameter="stop",
        params={"stop": ["charlie"]},
    ),
    Probe(
        name="n",
        purpose="A short answer with n 2: two choices expected.",
        difference="One choice and no error means the host ignored n.",
        conversation=Conversation("Name one primary colour.", None),
        parameter="n",
        params={"n": 2},
    ),
    Probe(
        name="logprobs",
        purpose="A short answer with logprobs and top_logprobs 2.",
        difference="No logprobs (or fewer alternatives) and no error: the host ignored them.",
        conversation=Conversation("Name one primary colour.", None),
        parameter="logprobs",
        params={"logprobs": True, "top_logprobs": 2},
    ),
    Probe(
        name="json_object",
        purpose="A JSON answer asked for with response_format json_object.",
        difference="An answer that is not a JSON object: the host ignored response_format.",
        conversation=Conversation(_CITY, None),
        parameter="response_format",
        params={"response_format": {"type": "json_object"}},
    ),
    Probe(
        name="json_schema",
        purpose="The same with response_format json_schema (strict).",
        difference="An answer that breaks the schema: the host ignored response_format.",
        conversation=Conversation(_CITY, None),
        parameter="response_format",
        params={
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "capital", "strict": True, "schema": CITY_SCHEMA},
            }
        },
    ),
    Probe(
        name="seed",
        purpose="The same request three times with temperature 0 and a seed.",
        difference="Different answers mean the host ignored seed and temperature (or, when "
        "they part late, batched numerics: see the confidence).",
        conversation=Conversation("Name three primary colours, comma-separated.", None),
        parameter="seed",
        params={"temperature": 0, "max_tokens": 64},
        repeats=3,
    ),
]
"""The parameter probes: one sampling parameter each, honoured, refused or ignored."""

PROBES: list[Probe] = [*TEMPLATE_PROBES, *PARAMETER_PROBES]
"""Every probe of version `PROBE_SET_VERSION`, in the order they are reported."""

PROBES_BY_NAME: dict[str, Probe] = {probe.name: probe for probe in PROBES}

"""The simulated model: a deterministic, seeded decision of the next assistant turn.

It decides from the request alone (stateless server): the conversation's tool results say
where the task stands. The same request with the same seed always yields the same turn.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from traces.sim.schema_values import example_arguments
from traces.sim.strategies.agent import AgentStrategy
from traces.sim.strategies.base import (
    Plan,
    Strategy,
    ToolSchemas,
    consecutive_failures,
    last_error,
)
from traces.sim.strategies.chain import ChainStrategy
from traces.sim.strategies.files import REQUIRED_TOOLS as FILES_TOOLS
from traces.sim.strategies.files import FilesStrategy
from traces.sim.strategies.generic import GenericStrategy, answer_without_tools
from traces.sim.strategies.repo_edit import RepoEditStrategy
from traces.sim.strategies.research import ResearchStrategy
from traces.sim.strategies.vault import TOOL as VAULT_TOOL
from traces.sim.strategies.vault import VaultStrategy
from traces.sim.transcript import Transcript, read_transcript
from traces.sim.voice import Voice, excerpt

MAX_CONSECUTIVE_FAILURES = 3
"""After this many fully failed tool turns in a row the model gives up and says so."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call of the decided turn, ready for the wire."""

    id: str
    """`call_` + 24 hex digits, derived from the seed and the conversation."""
    name: str
    arguments: str
    """Arguments as a JSON string, valid against the tool's declared schema."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The next assistant turn."""

    reasoning: str
    content: str
    """Final answer text; empty when the turn calls tools."""
    tool_calls: tuple[ToolCall, ...]
    strategy: str
    """Which strategy decided (chain, research, files, repo_edit, agent, generic, plain,
    give_up)."""
    unforced: Decision | None = None
    """The turn the model would have taken had `tool_choice` not constrained it; None when
    the constraint changed nothing."""

    @property
    def finish_reason(self) -> Literal["tool_calls", "stop"]:
        """`tool_calls` when the turn calls tools, `stop` otherwise."""
        return "tool_calls" if self.tool_calls else "stop"


def tool_schemas(tools: Sequence[Mapping[str, Any]] | None) -> dict[str, Mapping[str, Any]]:
    """Declared function tools as name -> parameters schema, in declaration order."""
    schemas: dict[str, Mapping[str, Any]] = {}
    for tool in tools or ():
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            parameters = function.get("parameters")
            schemas[function["name"]] = parameters if isinstance(parameters, Mapping) else {}
    return schemas


def select_strategy(
    tools: ToolSchemas,
    prompt_text: Callable[[], str] | None = None,
    messages: Sequence[Mapping[str, Any]] = (),
) -> Strategy:
    """Pick the strategy from the declared tool names (see the contract's simulator policy).

    `prompt_text` gives the prompt as the host rendered it, for strategies that may only
    know what the model can see (the planted-secret probe); `messages` are the request's,
    for a coding agent's strategy (its working directory, the calls it already made).
    Tools of no built-in task that include a coding agent's read/list/search/shell tools
    get the agent strategy; any other tools the generic one.
    """
    if VAULT_TOOL in tools:
        return VaultStrategy(prompt_text)
    if "open_box" in tools:
        return ChainStrategy()
    if "search" in tools and "open_document" in tools:
        return ResearchStrategy()
    if tools.keys() >= FILES_TOOLS:
        return FilesStrategy(tools)
    if RepoEditStrategy.recognises(tools):
        return RepoEditStrategy(tools)
    if AgentStrategy.recognises(tools):
        return AgentStrategy(tools, messages)
    return GenericStrategy(tools)


def _allowed_tools(tool_choice: Any, schemas: Mapping[str, Any]) -> frozenset[str] | None:
    """The tools a turn must call one of: the named function, or any declared tool for
    `required`; None when `tool_choice` forces no call (or names a tool never declared)."""
    if tool_choice == "required" and schemas:
        return frozenset(schemas)
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else tool_choice.get("name")
        if isinstance(name, str) and name in schemas:
            return frozenset({name})
    return None


def _call_id(seed: int, transcript: Transcript, index: int) -> str:
    material = f"{seed}:{transcript.content_hash}:{transcript.turn_index}:{index}"
    return "call_" + hashlib.sha256(material.encode()).hexdigest()[:24]


def _give_up(transcript: Transcript, voice: Voice) -> Plan:
    error = excerpt(last_error(transcript), 160)
    reasoning = voice.pick(
        (
            "Three attempts in a row failed, the last with: {error}. Retrying again is unlikely "
            "to help, so I will stop and report the failure.",
            "The tool keeps failing ({error}). I'll stop here instead of looping.",
        ),
        error=error,
    )
    content = (
        f"I could not complete the task: the last {MAX_CONSECUTIVE_FAILURES} tool calls "
        f"failed. Last error: {error}"
    )
    return Plan(reasoning=reasoning, content=content)


def _plan(
    transcript: Transcript,
    material: str,
    schemas: dict[str, Mapping[str, Any]],
    prompt_text: Callable[[], str] | None,
    messages: Sequence[Mapping[str, Any]],
) -> tuple[Plan, str]:
    """What the model says with `schemas` offered (none: it answers in text)."""
    voice = Voice(material)
    if not schemas:
        return answer_without_tools(transcript, voice), "plain"
    strategy = select_strategy(schemas, prompt_text, messages)
    if consecutive_failures(transcript, strategy) >= MAX_CONSECUTIVE_FAILURES:
        return _give_up(transcript, voice), "give_up"
    return strategy.next_plan(transcript, voice), strategy.name


def _guided(plan: Plan, name: str, schema: Mapping[str, Any], material: str) -> Plan:
    """The call guided decoding forces out of a model that meant to answer: the tool's name
    with arguments that fit its schema, the reasoning as it was."""
    arguments = example_arguments(schema, Voice(f"{material}:guided").rng)
    return Plan(reasoning=plan.reasoning, calls=((name, arguments),))


def decide(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
    *,
    seed: int,
    tool_choice: Any = None,
    prompt_text: Callable[[], str] | None = None,
) -> Decision:
    """The next assistant turn for a chat-completions request, with `tool_choice` enforced.

    `tools` is the request's `tools` list (OpenAI function-tool dicts). `tool_choice` "none"
    forces an answer; `required` forces a call to some declared tool and a named function a
    call to that one, as a host's guided decoding does: the model's own turn when it already
    complies, else its turn with only the allowed tools, else a call guided into their
    schema. The turn the model would have taken unconstrained is kept as `unforced` when it
    differs (a host that ignores `tool_choice` sends that). `prompt_text` returns the prompt
    as the host rendered it (computed only by strategies that need it).
    """
    transcript = read_transcript(messages)
    material = f"{seed}:{transcript.turn_index}:{transcript.content_hash}"
    schemas = tool_schemas(tools)
    free, free_name = _plan(transcript, material, schemas, prompt_text, messages)
    allowed = _allowed_tools(tool_choice, schemas)
    plan, strategy_name = free, free_name
    if tool_choice == "none" and schemas:
        plan, strategy_name = _plan(transcript, material, {}, prompt_text, messages)
    elif allowed is not None and not (free.calls and {n for n, _ in free.calls} <= allowed):
        narrowed = {name: schema for name, schema in schemas.items() if name in allowed}
        plan, strategy_name = _plan(transcript, material, narrowed, prompt_text, messages)
        if not plan.calls:
            first = next(iter(narrowed))
            plan = _guided(plan, first, narrowed[first], material)
    decision = _decision(plan, strategy_name, seed, transcript)
    if plan is free:
        return decision
    return replace(decision, unforced=_decision(free, free_name, seed, transcript))


def _decision(plan: Plan, strategy_name: str, seed: int, transcript: Transcript) -> Decision:
    calls = tuple(
        ToolCall(
            id=_call_id(seed, transcript, index),
            name=name,
            arguments=json.dumps(arguments, ensure_ascii=False),
        )
        for index, (name, arguments) in enumerate(plan.calls)
    )
    return Decision(
        reasoning=plan.reasoning,
        content="" if calls else plan.content,
        tool_calls=calls,
        strategy=strategy_name,
    )

"""What a host may really have rendered instead of the request it was sent.

Hosts rewrite history before their template sees it: some strip every earlier turn's
reasoning (or all but the latest turn's), some renumber tool-call ids in their model
family's style (llama.cpp's Kimi templates), most parse string arguments into objects (vLLM,
llama.cpp) or serialize object arguments back to strings. Each rewrite, and each
combination, is a named variant of the request; the variant whose rendering matches a
recorded `prompt_tokens` tells what the host did. Messages are never modified in place
(recorded steps share them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from traces.families import KIMI_ID

Message = dict[str, Any]
Messages = list[Message]

AS_SENT = "as sent"
REASONING_DROPPED = "reasoning dropped"
LAST_REASONING_ONLY = "last reasoning only"
IDS_REWRITTEN = "ids rewritten"
ARGUMENTS_AS_OBJECTS = "arguments as objects"
ARGUMENTS_AS_STRINGS = "arguments as strings"

_REASONING_FIELDS = ("reasoning_content", "reasoning", "reasoning_details", "thinking")


@dataclass(frozen=True)
class Variant:
    """One candidate of what the host rendered: the rewrites applied, and the result."""

    name: str
    """`as sent`, one rewrite (`reasoning dropped`), or several joined by ` + `."""
    rewrites: tuple[str, ...]
    messages: Messages


def _assistants(messages: Sequence[Mapping[str, Any]]) -> list[int]:
    return [i for i, m in enumerate(messages) if m.get("role") == "assistant"]


def _without_reasoning(message: Mapping[str, Any]) -> Message:
    """An assistant turn without its reasoning: fields removed, a leading `<think>` block
    cut out of the content."""
    turn = {k: v for k, v in message.items() if k not in _REASONING_FIELDS}
    content = turn.get("content")
    if isinstance(content, str) and content.lstrip().startswith("<think>"):
        _, closed, rest = content.partition("</think>")
        turn["content"] = rest.lstrip() if closed else ""
    return turn


def drop_reasoning(messages: Sequence[Mapping[str, Any]]) -> Messages:
    """Every assistant turn without its reasoning (a host that strips it from history)."""
    return [_without_reasoning(m) if m.get("role") == "assistant" else dict(m) for m in messages]


def keep_last_reasoning(messages: Sequence[Mapping[str, Any]]) -> Messages:
    """Only the latest assistant turn keeps its reasoning (a host that keeps just the turn
    before the new one, so each prompt stops extending the previous one)."""
    assistants = _assistants(messages)
    latest = assistants[-1] if assistants else -1
    return [
        _without_reasoning(m) if m.get("role") == "assistant" and i != latest else dict(m)
        for i, m in enumerate(messages)
    ]


def openai_style_id(old: str) -> str:
    """A `call_` id standing in for one the host would have minted (24 hex digits, the
    length of the simulator's; real hosts' ids differ, so counts with a real tokenizer are
    close rather than exact)."""
    return "call_" + hashlib.sha256(old.encode()).hexdigest()[:24]


def rewrite_ids(messages: Sequence[Mapping[str, Any]]) -> Messages:
    """Tool-call ids in the other style: Kimi's `functions.NAME:IDX` (IDX counting every call
    of the conversation) become `call_…`, anything else becomes Kimi's. A tool result takes
    the new id of the latest call that had its old one (clients reuse ids across turns)."""
    ids = [
        str(call.get("id") or "")
        for i in _assistants(messages)
        for call in messages[i].get("tool_calls") or []
        if isinstance(call, dict)
    ]
    to_openai = bool(ids) and all(KIMI_ID.match(i) for i in ids)
    renamed: dict[str, str] = {}
    index = 0
    out: Messages = []
    for message in messages:
        turn = dict(message)
        raw = message.get("tool_calls")
        if message.get("role") == "assistant" and isinstance(raw, list):
            calls = []
            for call in raw:
                if isinstance(call, dict):
                    old = str(call.get("id") or "")
                    function = call.get("function")
                    name = function.get("name") if isinstance(function, dict) else None
                    new = openai_style_id(old) if to_openai else f"functions.{name or ''}:{index}"
                    renamed[old] = new
                    index += 1
                    call = {**call, "id": new}
                calls.append(call)
            turn["tool_calls"] = calls
        elif isinstance(message.get("tool_call_id"), str):
            turn["tool_call_id"] = renamed.get(message["tool_call_id"], message["tool_call_id"])
        out.append(turn)
    return out


def _map_arguments(
    messages: Sequence[Mapping[str, Any]], convert: Callable[[Any], Any]
) -> Messages:
    out: Messages = []
    for message in messages:
        turn = dict(message)
        raw = message.get("tool_calls")
        if message.get("role") == "assistant" and isinstance(raw, list):
            calls = []
            for call in raw:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and "arguments" in function:
                    arguments = convert(function["arguments"])
                    call = {**call, "function": {**function, "arguments": arguments}}
                calls.append(call)
            turn["tool_calls"] = calls
        out.append(turn)
    return out


def _parsed(arguments: Any) -> Any:
    if not isinstance(arguments, str):
        return arguments
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments  # hosts pass invalid JSON through as the model wrote it
    return value if isinstance(value, dict) else arguments


def _serialized(arguments: Any) -> Any:
    if isinstance(arguments, dict | list):
        return json.dumps(arguments, ensure_ascii=False)
    return arguments


def arguments_as_objects(messages: Sequence[Mapping[str, Any]]) -> Messages:
    """String arguments that hold a JSON object parsed into the object (vLLM, llama.cpp)."""
    return _map_arguments(messages, _parsed)


def arguments_as_strings(messages: Sequence[Mapping[str, Any]]) -> Messages:
    """Object arguments serialized to JSON text (`json.dumps` defaults, non-ASCII kept)."""
    return _map_arguments(messages, _serialized)


def _has_string_arguments(messages: Sequence[Mapping[str, Any]]) -> bool:
    return any(
        isinstance(call, dict)
        and isinstance(call.get("function"), dict)
        and isinstance(call["function"].get("arguments"), str)
        for i in _assistants(messages)
        for call in messages[i].get("tool_calls") or []
    )


Rewrite = Callable[[Sequence[Mapping[str, Any]]], Messages]


def rewrites_for(messages: Sequence[Mapping[str, Any]]) -> dict[str, Rewrite]:
    """The rewrites that apply to `messages`, by name, in order of preference."""
    arguments: tuple[str, Rewrite] = (
        (ARGUMENTS_AS_OBJECTS, arguments_as_objects)
        if _has_string_arguments(messages)
        else (ARGUMENTS_AS_STRINGS, arguments_as_strings)
    )
    return dict(
        [
            (REASONING_DROPPED, drop_reasoning),
            (LAST_REASONING_ONLY, keep_last_reasoning),
            (IDS_REWRITTEN, rewrite_ids),
            arguments,
        ]
    )


def as_parsed(messages: Sequence[Mapping[str, Any]]) -> Messages:
    """The messages as every server's request parser hands them to its template: a
    `content` of null becomes the empty string (vLLM, SGLang and llama.cpp all do this;
    real templates would otherwise print `None` or fail on `None.lstrip`)."""
    return [
        {**m, "content": ""} if "content" in m and m["content"] is None else dict(m)
        for m in messages
    ]


_EXCLUSIVE = frozenset({REASONING_DROPPED, LAST_REASONING_ONLY})
"""Rewrites that never combine: dropping all reasoning already drops the latest turn's."""


def iter_variants(
    messages: Sequence[Mapping[str, Any]], inert: AbstractSet[str] = frozenset()
) -> Iterator[Variant]:
    """`as sent` first, then each rewrite that changes the messages, then their
    combinations, fewest rewrites first (the simplest explanation wins a tie).

    Lazy, so a caller that finds its match early never pays for the rest. `inert` names
    rewrites the caller found to change nothing in what it renders (ids, for a template that
    never prints them); combinations with them are skipped. It is read as combinations are
    made, so the caller may add to it while iterating. Every variant starts from
    `as_parsed`, which no host skips.
    """
    sent = as_parsed(messages)
    yield Variant(AS_SENT, (), sent)
    rewrites = rewrites_for(messages)
    applicable: dict[str, Messages] = {}
    for name, rewrite in rewrites.items():
        result = rewrite(sent)
        if result != sent:
            applicable[name] = result
            yield Variant(name, (name,), result)
    for size in range(2, len(applicable) + 1):
        for names in combinations(applicable, size):
            if not inert.isdisjoint(names) or set(names) >= _EXCLUSIVE:
                continue
            result = applicable[names[0]]
            for name in names[1:]:
                result = rewrites[name](result)
            yield Variant(" + ".join(names), names, result)


def variants_of(messages: Sequence[Mapping[str, Any]]) -> list[Variant]:
    """Every variant of `iter_variants`, as a list."""
    return list(iter_variants(messages))

"""The model's own mistakes over a run: looping on one call, getting an argument wrong,
making up an id.

Unlike the host faults, these change what the model decides, so they read the conversation:
the previous turn's calls (to repeat them), its results (a misnamed argument or a made-up id
comes only on a turn that does not follow a failure, so the model's retry succeeds).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from traces.sim.faults.base import FaultContext
from traces.sim.ids import ID_STYLES, history_call_count, openai_id
from traces.sim.reply import Reply, ReplyCall, recounted
from traces.sim.strategies.base import looks_like_error
from traces.sim.templates.history import arguments_object, message_text


def _last_turn(messages: Sequence[Mapping[str, Any]], before: int | None = None) -> int | None:
    """Index of the last assistant message (before index `before`), None when there is
    none."""
    end = len(messages) if before is None else before
    for index in range(end - 1, -1, -1):
        if messages[index].get("role") == "assistant":
            return index
    return None


def _previous_calls(
    messages: Sequence[Mapping[str, Any]], index: int | None = None
) -> list[tuple[str, str]]:
    """(name, arguments as JSON text) of each call of the assistant turn at `index` (by
    default the last one)."""
    index = _last_turn(messages) if index is None else index
    calls = messages[index].get("tool_calls") if index is not None else None
    found = []
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            continue
        arguments = function.get("arguments")
        text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
        found.append((function["name"], text))
    return found


def repeated_call(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The model ignores what its calls returned and makes exactly the same calls again (a
    loop that burns the step budget). Requests whose last assistant turn made calls."""
    previous = _previous_calls(ctx.messages)
    if not previous:
        return None
    first = history_call_count(ctx.messages)
    make_id = ID_STYLES[ctx.id_style]
    calls = []
    for offset, (name, arguments) in enumerate(previous):
        minted = openai_id(f"{ctx.key}:repeated:{offset}")
        index = first + offset
        calls.append(ReplyCall(make_id(minted, name, index), name, arguments, minted, index))
    repeated = replace(reply, content="", calls=tuple(calls), finish_reason="tool_calls")
    # The model generated these calls instead: it is billed for them, not for the others.
    return recounted(repeated, ctx.template)


def repeated_call_once(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The model makes the calls of its previous turn once more, then moves on: never twice
    in a row, so each repeat stays single. Requests whose last assistant turn made calls
    that did not already repeat the turn before."""
    last = _last_turn(ctx.messages)
    previous = _previous_calls(ctx.messages)
    if last is None or not previous:
        return None
    earlier = _last_turn(ctx.messages, before=last)
    if earlier is not None and _previous_calls(ctx.messages, earlier) == previous:
        return None
    return repeated_call(reply, ctx)


def _follows_failure(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a tool result after the last assistant turn reports an error."""
    start = _last_turn(messages)
    if start is None:
        return False
    return any(
        looks_like_error(message_text(message.get("content")))
        for message in messages[start + 1 :]
        if message.get("role") == "tool"
    )


_MISNAMED = {"path": "file_path", "query": "search_query", "pattern": "regex"}
"""Near misses models make for common parameter names (`box_id` loses its prefix instead)."""


def _misnamed(key: str) -> str:
    if key in _MISNAMED:
        return _MISNAMED[key]
    return key.rsplit("_", 1)[1] if "_" in key else f"{key}_value"


def misnamed_argument(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The model misnames its first call's first argument (`box_id` -> `id`, `path` ->
    `file_path`), so the tool refuses the call; the turn after the failure gets it right.
    Tool turns with arguments that do not follow a failed call."""
    first = reply.calls[0] if reply.calls else None
    arguments = arguments_object(first.arguments) if first is not None else None
    if first is None or not arguments or _follows_failure(ctx.messages):
        return None
    key = next(iter(arguments))
    wrong = _misnamed(key)
    if wrong in arguments:
        return None
    renamed = {(wrong if name == key else name): value for name, value in arguments.items()}
    new: str | dict[str, Any] = (
        json.dumps(renamed, ensure_ascii=False) if isinstance(first.arguments, str) else renamed
    )
    return replace(reply, calls=(replace(first, arguments=new), *reply.calls[1:]))


def invented_id(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The model makes up the id its first call names: the first argument, when it is an id
    (`box_id`, `doc_id`), gets a suffix no id has, so the tool answers it does not exist;
    the turn after the failure uses the real one. Tool turns whose first argument is a
    string id, that do not follow a failed call."""
    first = reply.calls[0] if reply.calls else None
    arguments = arguments_object(first.arguments) if first is not None else None
    if first is None or not arguments or _follows_failure(ctx.messages):
        return None
    key, value = next(iter(arguments.items()))
    if not key.endswith("_id") or not isinstance(value, str):
        return None
    made_up = {**arguments, key: f"{value}-x"}
    new: str | dict[str, Any] = (
        json.dumps(made_up, ensure_ascii=False) if isinstance(first.arguments, str) else made_up
    )
    return replace(reply, calls=(replace(first, arguments=new), *reply.calls[1:]))

"""Faults on a turn's tool calls: leaked call tokens, calls as text or dropped, broken or
emptied arguments, tags in names and keys, undeclared tools, ids. Each applies to tool turns
only (None otherwise).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from traces.families import FAMILIES
from traces.sim.faults.base import FaultContext
from traces.sim.ids import ID_STYLES, OTHER_STYLE, kimi_id, last_history_id, openai_id
from traces.sim.reply import Reply, ReplyCall, history_calls, recounted
from traces.sim.templates.chatml import tool_call_block
from traces.sim.templates.history import arguments_object


def _raw_calls(reply: Reply, ctx: FaultContext) -> str:
    return ctx.template.calls_text(history_calls(reply.calls))


def leaked_tokens_content(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The parser missed the calls: their raw family tokens end up in content, finish stop."""
    if not reply.calls:
        return None
    content = reply.content + _raw_calls(reply, ctx)
    return replace(reply, content=content, calls=(), finish_reason="stop")


def leaked_tokens_reasoning(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The reasoning parser ran past the calls: their tokens also appear in the reasoning."""
    if not reply.calls:
        return None
    return replace(reply, reasoning=f"{reply.reasoning} {_raw_calls(reply, ctx)}".lstrip())


def foreign_call_tags(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The model writes its calls as Hermes `<tool_call>` JSON blocks, a syntax foreign to
    its family's template that no parser of its host reads: they stay in content, finish
    stop. Tool turns of families whose own calls are written otherwise."""
    if not reply.calls or FAMILIES[ctx.template.family].tool_call_tag:
        return None
    blocks = "\n".join(
        tool_call_block(call.name, call.arguments) for call in history_calls(reply.calls)
    )
    return replace(reply, content=reply.content + blocks, calls=(), finish_reason="stop")


TEXT_SHAPES = ("lines", "parameters", "flattened", "function", "fenced", "list", "after_prose")
"""How models write calls as text: one `{"name", "arguments"}` object per line, Llama's
`parameters`, arguments beside the name, OpenAI's `{"type": "function", "function": …}`
with the arguments as a string, a fenced block, a JSON list, or after a sentence."""


def _as_text(name: str, arguments: Any, shape: str) -> Any:
    if shape == "parameters":
        return {"name": name, "parameters": arguments}
    if (
        shape == "flattened"
        and isinstance(arguments, dict)
        and not {"name", "type"} & set(arguments)
    ):
        return {"name": name, **arguments}
    if shape == "function":
        text = (
            arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        )
        return {"type": "function", "function": {"name": name, "arguments": text}}
    return {"name": name, "arguments": arguments}


def tool_call_as_text(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The model wrote its calls as JSON text instead of the call format, in one of the
    shapes models use (`TEXT_SHAPES`, chosen per request); no tool_calls, finish stop."""
    if not reply.calls:
        return None
    shape = TEXT_SHAPES[int(ctx.roll("tool_call_as_text.shape") * len(TEXT_SHAPES))]
    objects = []
    for call in reply.calls:
        arguments = arguments_object(call.arguments)
        shown: Any = arguments if arguments is not None else call.arguments
        objects.append(_as_text(call.name, shown, shape))
    if shape == "list":
        content = json.dumps(objects, ensure_ascii=False)
    else:
        content = "\n".join(json.dumps(obj, ensure_ascii=False) for obj in objects)
    if shape == "fenced":
        content = f"```json\n{content}\n```"
    elif shape == "after_prose":
        content = f"I'll call the tool now.\n{content}"
    return replace(reply, content=content, calls=(), finish_reason="stop")


def tool_choice_ignored(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The host drops the request's `tool_choice`: the model's unconstrained turn goes out
    (an answer where a call was required, another function than the one named, calls where
    none were allowed). Requests whose `tool_choice` changed the turn."""
    if reply.unforced is None:
        return None
    return replace(reply.unforced, headers=reply.headers)


def dropped_call(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The calls vanish: empty content, finish stop, completion tokens still counted."""
    if not reply.calls:
        return None
    return replace(reply, content="", calls=(), finish_reason="stop")


def _with_first(reply: Reply, call: ReplyCall) -> Reply:
    return replace(reply, calls=(call, *reply.calls[1:]))


def invalid_json_arguments(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The first call's arguments lose their closing brace (not JSON any more)."""
    text = reply.calls[0].arguments if reply.calls else None
    if not isinstance(text, str):
        return None
    broken = text[:-1] if text.endswith("}") else text + "{"
    return _with_first(reply, replace(reply.calls[0], arguments=broken))


def _wrong_type(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


def wrong_type_arguments(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The first argument of the first call gets the wrong JSON type (string -> array,
    number -> string, ...); still valid JSON, no longer schema-valid.
    """
    if not reply.calls:
        return None
    first = reply.calls[0]
    arguments = arguments_object(first.arguments)
    if not arguments:
        return None
    key = next(iter(arguments))
    changed = {**arguments, key: _wrong_type(arguments[key])}
    new: str | dict[str, Any] = (
        json.dumps(changed, ensure_ascii=False) if isinstance(first.arguments, str) else changed
    )
    return _with_first(reply, replace(first, arguments=new))


def emptied_arguments(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The parser missed a value tag and emptied the first call's arguments to `{}` (GLM on
    vLLM), though its tool has required parameters."""
    first = reply.calls[0] if reply.calls else None
    if first is None or not arguments_object(first.arguments):
        return None
    if not ctx.parameters().get(first.name, {}).get("required"):
        return None
    empty: str | dict[str, Any] = "{}" if isinstance(first.arguments, str) else {}
    return _with_first(reply, replace(first, arguments=empty))


_UNDECLARED = ("toolbox.web.answer", "browser.search", "web_search")
"""Tools models know from their training and call although nobody declared them."""


def hallucinated_tool(reply: Reply, ctx: FaultContext) -> Reply | None:
    """Beside its calls, the model calls a tool that was never declared, one it knows from
    training (Qwen calls `toolbox.web.answer` where only `execute` is declared), with the
    first call's first value as its query."""
    declared = ctx.parameters()
    names = [name for name in _UNDECLARED if name not in declared]
    if not reply.calls or not names:
        return None
    name = names[int(ctx.roll("hallucinated_tool.name") * len(names))]
    last = reply.calls[-1]
    values = list((arguments_object(reply.calls[0].arguments) or {}).values())
    query = values[0] if values and isinstance(values[0], str) else ""
    minted = openai_id(f"{last.minted}:{name}")
    index = last.index + 1
    extra = ReplyCall(
        id=ID_STYLES[ctx.id_style](minted, name, index),
        name=name,
        arguments=json.dumps({"query": query}, ensure_ascii=False),
        minted=minted,
        index=index,
    )
    # The model generated the extra call: it is billed for it (usage counts the turn as it
    # came back, so the next prompt's growth matches what was counted).
    return recounted(replace(reply, calls=(*reply.calls, extra)), ctx.template)


def tag_in_name(reply: Reply, ctx: FaultContext) -> Reply | None:
    """A piece of the family's call format sticks to the first call's name."""
    if not reply.calls:
        return None
    first = reply.calls[0]
    call_id = first.id or kimi_id(first.name, first.index)
    return _with_first(reply, replace(first, name=ctx.template.leaked_name(first.name, call_id)))


def tag_in_key(reply: Reply, ctx: FaultContext) -> Reply | None:
    """A tag of the family's argument format sticks to the first argument's key."""
    if not reply.calls:
        return None
    first = reply.calls[0]
    arguments = arguments_object(first.arguments)
    if not arguments:
        return None
    renamed = {
        (key + ctx.template.key_tag if position == 0 else key): value
        for position, (key, value) in enumerate(arguments.items())
    }
    new: str | dict[str, Any] = (
        json.dumps(renamed, ensure_ascii=False) if isinstance(first.arguments, str) else renamed
    )
    return _with_first(reply, replace(first, arguments=new))


def object_arguments(reply: Reply, ctx: FaultContext) -> Reply | None:
    """Arguments arrive as JSON objects instead of JSON strings."""
    changed = False
    calls = []
    for call in reply.calls:
        arguments = arguments_object(call.arguments) if isinstance(call.arguments, str) else None
        if arguments is not None:
            call, changed = replace(call, arguments=arguments), True
        calls.append(call)
    return replace(reply, calls=tuple(calls)) if changed else None


def rewritten_ids(reply: Reply, ctx: FaultContext) -> Reply | None:
    """Ids come in the other style (`call_…` where Kimi ids are expected, or vice versa)."""
    if not reply.calls:
        return None
    make = ID_STYLES[OTHER_STYLE[ctx.id_style]]
    calls = tuple(replace(c, id=make(c.minted, c.name, c.index)) for c in reply.calls)
    return replace(reply, calls=calls)


def duplicated_ids(reply: Reply, ctx: FaultContext) -> Reply | None:
    """Two calls share an id or, for a single call, it reuses the last id of the history."""
    if len(reply.calls) >= 2:
        first, second, *rest = reply.calls
        return replace(reply, calls=(first, replace(second, id=first.id), *rest))
    if not reply.calls:
        return None
    previous = last_history_id(ctx.messages)
    if previous is None:
        return None
    return _with_first(reply, replace(reply.calls[0], id=previous))


def missing_ids(reply: Reply, ctx: FaultContext) -> Reply | None:
    """Calls carry no id at all."""
    if not reply.calls:
        return None
    return replace(reply, calls=tuple(replace(call, id=None) for call in reply.calls))

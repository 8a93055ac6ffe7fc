"""The reply a host sends for one request, before it is put on the wire.

The policy decides the model's turn; this module turns it into what the host returns: ids in
the family's style, usage counted over the family's rendering of the turn. Faults rewrite a
`Reply` (never the decision), and `wire` serialises it in the dialect's shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from traces.dialects import Dialect
from traces.sim.ids import ID_STYLES, history_call_count
from traces.sim.policy import Decision
from traces.sim.prefix_cache import cache_usage
from traces.sim.templates import ChatTemplate
from traces.sim.templates.history import HistoryCall
from traces.sim.tokenizer import count_tokens
from traces.wire_forms import IdStyle


@dataclass(frozen=True, slots=True)
class ReplyCall:
    """One tool call as the host reports it."""

    id: str | None
    """None: the host sends no id at all."""
    name: str
    arguments: str | dict[str, Any]
    """A JSON string, as OpenAI sends it, or (a fault) an object."""
    minted: str
    """The opaque `call_` id the policy minted; a host switching id style reuses it."""
    index: int
    """Global index of the call in the conversation (Kimi's IDX)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What the host answers, in dialect-neutral form."""

    reasoning: str
    """Reasoning text; where it goes is the dialect's business ("" sends none)."""
    content: str
    calls: tuple[ReplyCall, ...]
    finish_reason: str
    usage: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()
    """Response headers the host adds to this reply (a fault's)."""
    unforced: Reply | None = None
    """What the host sends had it not enforced the request's `tool_choice`; None when
    enforcing it changed nothing."""
    logprobs_top: int | None = None
    """Alternatives per answer token when the request asked for logprobs; None: no logprobs."""


def usage_body(
    template: ChatTemplate,
    reasoning: str,
    content: str,
    calls: Sequence[HistoryCall],
    prompt: int,
    cache_fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """OpenAI usage: completion tokens count the turn as the family's template renders it;
    `cache_fields` report the cached prompt tokens in the host's shape (none cached if None)."""
    completion = count_tokens(template.completion(reasoning, content, calls))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        **(cache_fields or {"prompt_tokens_details": {"cached_tokens": 0}}),
        "completion_tokens_details": {"reasoning_tokens": count_tokens(reasoning)},
    }


def build_reply(
    decision: Decision,
    dialect: Dialect,
    template: ChatTemplate,
    id_style: IdStyle,
    messages: Sequence[Mapping[str, Any]],
    prompt_tokens: int,
    cached_tokens: int = 0,
) -> Reply:
    """The host's reply to `decision`: ids in `id_style` (the family's), usage over the family
    (with `cached_tokens` of the prompt served from the host's prefix cache)."""
    name_id = ID_STYLES[id_style]
    first = history_call_count(messages) if decision.tool_calls else 0
    calls = tuple(
        ReplyCall(
            id=name_id(call.id, call.name, first + offset),
            name=call.name,
            arguments=call.arguments,
            minted=call.id,
            index=first + offset,
        )
        for offset, call in enumerate(decision.tool_calls)
    )
    usage = usage_body(
        template,
        decision.reasoning,
        decision.content,
        history_calls(calls),
        prompt_tokens,
        cache_usage(dialect, prompt_tokens, cached_tokens),
    )
    unforced = None
    if decision.unforced is not None:
        unforced = build_reply(
            decision.unforced, dialect, template, id_style, messages, prompt_tokens, cached_tokens
        )
    return Reply(
        reasoning=decision.reasoning,
        content=decision.content,
        calls=calls,
        finish_reason=decision.finish_reason,
        usage=usage,
        unforced=unforced,
    )


def recounted(reply: Reply, template: ChatTemplate) -> Reply:
    """`reply` with its completion tokens counted again over what it now holds: for the
    model's own changes of mind (a fault making it repeat a turn), which it generated and is
    billed for; the prompt and cache fields stay."""
    prompt = reply.usage.get("prompt_tokens", 0)
    fields = {k: v for k, v in reply.usage.items() if k.startswith("prompt")}
    usage = usage_body(
        template, reply.reasoning, reply.content, history_calls(reply.calls), prompt, fields
    )
    return replace(reply, usage=usage)


def history_calls(calls: Sequence[ReplyCall]) -> list[HistoryCall]:
    """Reply calls in the form templates render."""
    return [HistoryCall(call.id or "", call.name, call.arguments) for call in calls]

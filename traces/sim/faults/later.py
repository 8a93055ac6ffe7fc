"""Faults that fire only from the second turn on, as real hosts' do when their chat template
renders the history wrong: the first request has no history to render, so it goes well.

A request is a later turn when an assistant turn is in its history. Each fault applies to
later tool turns only (None otherwise, so the first turn stays clean).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from traces.sim.faults.base import FaultContext
from traces.sim.faults.calls import rewritten_ids
from traces.sim.reply import Reply
from traces.sim.templates.history import arguments_object
from traces.sim.tokenizer import count_tokens

_KEPT = 0.6
"""Share of the reasoning's words kept when the model stops thinking mid-sentence."""
_PUNCTUATION = ".,;:!?…"


def later_turn(ctx: FaultContext) -> bool:
    """Whether the request continues a conversation: an assistant turn is in its history."""
    return any(message.get("role") == "assistant" for message in ctx.messages)


def _cut(reasoning: str) -> str:
    """The reasoning stopped mid-sentence: its first words, no final punctuation."""
    words = reasoning.split()
    kept = " ".join(words[: max(2, int(len(words) * _KEPT))])
    return kept.rstrip(_PUNCTUATION) or kept


def late_empty_turn(reply: Reply, ctx: FaultContext) -> Reply | None:
    """From the second turn on, a tool turn ends after part of its reasoning: cut
    mid-sentence, no content, no calls, finish_reason stop, usage counting only what was
    generated."""
    if not later_turn(ctx) or not reply.calls or not reply.reasoning:
        return None
    reasoning = _cut(reply.reasoning)
    completion = count_tokens(ctx.template.completion(reasoning, "", ()))
    prompt = int(reply.usage.get("prompt_tokens") or 0)
    usage: dict[str, Any] = {
        **reply.usage,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": count_tokens(reasoning)},
    }
    return replace(
        reply, reasoning=reasoning, content="", calls=(), finish_reason="stop", usage=usage
    )


def late_emptied_arguments(reply: Reply, ctx: FaultContext) -> Reply | None:
    """From the second turn on, the first call's arguments arrive as `""` ({} when the host
    sends objects) although its tool has required parameters."""
    first = reply.calls[0] if later_turn(ctx) and reply.calls else None
    if first is None or not arguments_object(first.arguments):
        return None
    if not ctx.parameters().get(first.name, {}).get("required"):
        return None
    empty: str | dict[str, Any] = "" if isinstance(first.arguments, str) else {}
    return replace(reply, calls=(replace(first, arguments=empty), *reply.calls[1:]))


def late_rewritten_ids(reply: Reply, ctx: FaultContext) -> Reply | None:
    """From the second turn on, ids in the other style (`call_…` where Kimi's
    `functions.NAME:IDX` is expected, or vice versa)."""
    return rewritten_ids(reply, ctx) if later_turn(ctx) else None

"""Faults on where reasoning lands and how its tokens are reported."""

from __future__ import annotations

from dataclasses import replace

from traces.sim.faults.base import FaultContext, PromptOptions
from traces.sim.reply import Reply


def reasoning_swallows_answer(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The end of reasoning was never seen: the answer is inside it and content is empty."""
    if reply.calls or not reply.content:
        return None
    reasoning = f"{reply.reasoning}\n\n{reply.content}" if reply.reasoning else reply.content
    return replace(reply, reasoning=reasoning, content="")


def reasoning_in_content(reply: Reply, ctx: FaultContext) -> Reply | None:
    """No reasoning parser: the reasoning text is dumped into content, no reasoning field."""
    if not reply.reasoning:
        return None
    content = f"{reply.reasoning}\n\n{reply.content}" if reply.content else reply.reasoning
    return replace(reply, reasoning="", content=content)


def reasoning_tokens_missing(reply: Reply, ctx: FaultContext) -> Reply | None:
    """Usage has no `completion_tokens_details.reasoning_tokens` (details are null)."""
    if not ctx.sends_usage or reply.usage.get("completion_tokens_details") is None:
        return None
    return replace(reply, usage={**reply.usage, "completion_tokens_details": None})


def reasoning_tokens_outside_completion(reply: Reply, ctx: FaultContext) -> Reply | None:
    """Reasoning tokens are reported beside `completion_tokens` instead of inside it (the
    total still counts them, so it exceeds prompt + completion).
    """
    details = reply.usage.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens", 0) if isinstance(details, dict) else 0
    if not ctx.sends_usage or not reasoning:
        return None
    completion = reply.usage["completion_tokens"] - reasoning
    return replace(reply, usage={**reply.usage, "completion_tokens": completion})


def reasoning_dropped_from_history(options: PromptOptions) -> PromptOptions:
    """The host strips every earlier turn's reasoning before its template runs."""
    return replace(options, history_reasoning=False)


def reasoning_kept_last_only(options: PromptOptions) -> PromptOptions:
    """The host keeps the reasoning of the latest assistant turn only: each request renders
    the turn before it without its reasoning, so the prompt no longer extends the previous one
    and the prefix cache misses from there on."""
    return replace(options, last_reasoning_only=True)

"""Faults on `finish_reason`: it disagrees with whether the turn calls tools, or hides that
the turn spent its whole budget."""

from __future__ import annotations

from dataclasses import replace

from traces.sim.faults.base import FaultContext
from traces.sim.reply import Reply


def finish_stop_with_calls(reply: Reply, ctx: FaultContext) -> Reply | None:
    """Tool calls present but finish_reason `stop` (tool turns only)."""
    return replace(reply, finish_reason="stop") if reply.calls else None


def finish_tool_calls_without_calls(reply: Reply, ctx: FaultContext) -> Reply | None:
    """finish_reason `tool_calls` on an answer without calls (answer turns only)."""
    return None if reply.calls else replace(reply, finish_reason="tool_calls")


def finish_length_with_calls(reply: Reply, ctx: FaultContext) -> Reply | None:
    """Complete tool calls but finish_reason `length` (tool turns only)."""
    return replace(reply, finish_reason="length") if reply.calls else None


def finish_length_hidden(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The turn ran into `max_tokens` after its calls parsed, yet finish_reason stays
    `tool_calls` (vLLM): completion_tokens equal the budget, nothing else tells (tool turns of
    requests that set a budget, with usage)."""
    if not reply.calls or ctx.max_tokens is None or not ctx.sends_usage:
        return None
    spent = ctx.max_tokens
    usage = {**reply.usage, "completion_tokens": spent}
    usage["total_tokens"] = usage["prompt_tokens"] + spent
    details = usage.get("completion_tokens_details")
    if isinstance(details, dict) and details.get("reasoning_tokens", 0) > spent:
        usage["completion_tokens_details"] = {**details, "reasoning_tokens": spent}
    return replace(reply, usage=usage)

"""Faults on `finish_reason`: it disagrees with whether the turn calls tools."""

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

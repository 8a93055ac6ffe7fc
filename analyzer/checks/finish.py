"""finish_reason disagreeing with what the turn holds.

Agents loop on `finish_reason == "tool_calls"`; a host that says `stop` with calls (vLLM with
`tool_choice: required`) or `tool_calls` without any makes a client end or spin wrongly.
"""

from __future__ import annotations

from collections.abc import Iterator

from analyzer.checks.records import Finding, Run, Step


def finish_reason(step: Step, run: Run) -> Iterator[Finding]:
    """`stop` with calls (unless a named tool_choice), `tool_calls` without, `length` with."""
    if step.failed:
        return
    raw = {"finish_reason": step.finish_reason_raw, "calls": len(step.calls)}
    if step.calls and step.finish_reason == "stop" and step.forced_tool is None:
        # OpenAI itself answers `stop` when tool_choice names the function: not a fault.
        yield Finding("finish_stop_with_calls", "warning", "provider", step.index, raw)
    elif not step.calls and step.finish_reason == "tool_calls":
        yield Finding("finish_tool_calls_without_calls", "warning", "provider", step.index, raw)
    elif step.calls and step.finish_reason == "length":
        complete = all(call.json_valid for call in step.calls)
        # Complete calls at `length` are the host's mislabel; truncated ones hit the limit.
        yield Finding(
            "finish_length_with_calls",
            "warning" if complete else "error",
            "provider" if complete else "model",
            step.index,
            {**raw, "calls_complete": complete},
        )

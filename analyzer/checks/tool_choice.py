"""`tool_choice` not enforced: the request forced a call (`required`, or a named function) and
none came back, or another function was called; or it forbade calls (`none`) and got some.

Hosts enforce `tool_choice` with guided decoding; one that silently drops the constraint
(Ollama, vLLM with some parsers) leaves an agent that relies on it with a text answer where
it needed a call. The request and the response are both recorded, so this is observed, not
inferred.
"""

from __future__ import annotations

from analyzer.checks.calls import stream_cut
from analyzer.checks.parser_lost import lost_to_parser
from analyzer.checks.reasoning import empty_turn
from analyzer.checks.records import Finding, Run, Step

KINDS = frozenset({"tool_choice_ignored"})
"""Finding kinds this module emits (the catalogue describes each)."""

_EXCERPT = 200


def _cut_short(step: Step, run: Run) -> str | None:
    """Why the response cannot be held to `tool_choice`: it failed, it was cut at the token
    limit (a call may have been on its way), its stream was cut before it finished, or the
    turn stopped mid-thought with nothing after it (`empty_turn_after_reasoning`: the host
    ended the turn before the model could act, so nothing shows the constraint was dropped)."""
    if step.failed:
        return "error"
    if step.finish_reason == "length":
        return "length"
    if stream_cut(step):
        return "stream_cut"
    if not step.calls and empty_turn(step, run) is not None:
        return "empty_turn"
    return None


def tool_choice_ignored(step: Step, run: Run) -> list[Finding]:
    """`required` or a named function with no call (or another function called), `none`
    with calls. Not judged on responses cut short (`_cut_short`), nor when the request
    declared no tools or named a function it did not declare (the request was wrong); a
    forced call the parser lost is `parser_lost`'s to report."""
    findings: list[Finding] = []
    choice = step.request_params.get("tool_choice")
    if choice is None or choice == "auto" or not step.tools or _cut_short(step, run) is not None:
        return findings
    called = [call.name for call in step.calls]
    named = step.forced_tool
    if named is not None:
        if named not in step.tools:
            return findings
        broken = not called or any(name != named for name in called)
    elif choice == "required":
        broken = not called
    elif choice == "none":
        broken = bool(called)
    else:
        return findings  # a form this check does not know (`allowed_tools`, …): unknown, not broken
    if not broken or (not called and lost_to_parser(step, run)):
        return findings
    findings.append(
        Finding(
            "tool_choice_ignored",
            "error",
            "provider",
            step.index,
            {
                "tool_choice": choice,
                "called": called,
                "finish_reason": step.finish_reason_raw,
                "content": (step.content or "")[:_EXCERPT],
            },
        )
    )
    return findings

"""finish_reason disagreeing with what the turn holds.

Agents loop on `finish_reason == "tool_calls"`; a host that says `stop` with calls (vLLM with
`tool_choice: required`) or `tool_calls` without any makes a client end or spin wrongly, and
one that relabels a turn cut at `max_tokens` hides that its last call may be truncated.
"""

from __future__ import annotations

from analyzer.checks.records import Finding, Run, Step

KINDS = frozenset(
    {
        "finish_stop_with_calls",
        "finish_tool_calls_without_calls",
        "finish_length_with_calls",
        "finish_length_hidden",
    }
)
"""Finding kinds this module emits (the catalogue describes each)."""


END_TOKENS = 2
"""Tokens a host may count past the budget for the end of the turn (an end-of-turn or
end-of-reasoning token): within this margin the budget was spent; past it, it was ignored
(`sampling.max_tokens_ignored`)."""


EXACT_BUDGET_CONFIDENCE = 0.9
"""How sure a turn that used exactly its `max_tokens` was cut rather than ended there."""
MARGIN_CONFIDENCE = 0.75
"""The same for a turn that used the budget plus an end-of-turn token or two."""


def finish_reason(step: Step, run: Run) -> list[Finding]:
    """`stop` with calls (unless a named tool_choice), `tool_calls` without, `length` with;
    and any other finish_reason on a turn that spent the whole `max_tokens` budget."""
    findings: list[Finding] = []
    if step.failed:
        return findings
    raw = {"finish_reason": step.finish_reason_raw, "calls": len(step.calls)}
    if step.calls and step.finish_reason == "stop" and step.forced_tool is None:
        # OpenAI itself answers `stop` when tool_choice names the function: not a fault.
        findings.append(Finding("finish_stop_with_calls", "warning", "provider", step.index, raw))
    elif not step.calls and step.finish_reason == "tool_calls":
        findings.append(
            Finding("finish_tool_calls_without_calls", "warning", "provider", step.index, raw)
        )
    elif step.calls and step.finish_reason == "length":
        complete = all(call.json_valid for call in step.calls)
        # Complete calls at `length` are the host's mislabel; truncated ones hit the limit.
        findings.append(
            Finding(
                "finish_length_with_calls",
                "warning" if complete else "error",
                "provider" if complete else "model",
                step.index,
                {**raw, "calls_complete": complete},
            )
        )
    if budget_spent(step) and step.finish_reason != "length":
        # vLLM reports `tool_calls` for a turn guillotined at max_tokens once any call parsed;
        # the budget being spent exactly is the only trace left. A turn may also end of itself
        # on its very last allowed token: rare, and rarer on the budget to the token than
        # within the end-of-turn margin.
        choices, limit = step.choices_counted, step.max_tokens
        evidence = {**raw, "completion_tokens": step.completion_tokens, "max_tokens": limit}
        if choices > 1:
            evidence["choices"] = choices
        exact = limit is not None and step.completion_tokens == choices * limit
        confidence = EXACT_BUDGET_CONFIDENCE if exact else MARGIN_CONFIDENCE
        findings.append(
            Finding("finish_length_hidden", "warning", "provider", step.index, evidence, confidence)
        )
    return findings


def budget_spent(step: Step) -> bool:
    """Whether the turn used its whole `max_tokens` budget, whatever its finish_reason says:
    usage at the limit, up to `END_TOKENS` past it (per choice, when usage counts `n`
    choices: then every one of them was cut)."""
    limit, used = step.max_tokens, step.completion_tokens
    if limit is None or used is None:
        return False
    choices = step.choices_counted
    return choices * limit <= used <= choices * (limit + END_TOKENS)

"""Every check, by name, and running them all over one run.

Step checks look at one step (and may consult the run for neighbours); run checks look across
steps (ids reused, loops, recoveries). Adding a check is adding it here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from analyzer.checks import (
    calls,
    emptied,
    finish,
    harmony,
    history,
    http,
    ids,
    kept,
    leaks,
    loops,
    reasoning,
    sampling,
    streaming,
    tool_choice,
    tools,
)
from analyzer.checks.records import Finding, Run, Step
from analyzer.checks.version import CHECK_VERSION as CHECK_VERSION  # where it was read before

if TYPE_CHECKING:
    from analyzer.checks.timing import Timings

StepCheck = Callable[[Step, Run], Iterable[Finding]]
RunCheck = Callable[[Run], Iterable[Finding]]


STEP_CHECKS: dict[str, StepCheck] = {
    "leaked_special_tokens": leaks.leaked_special_tokens,
    "harmony_unparsed": harmony.harmony_unparsed,
    "tool_call_as_text": calls.tool_call_as_text,
    "dropped_call": calls.dropped_call,
    "arguments": calls.arguments,
    "empty_arguments": emptied.empty_arguments,
    "names_and_keys": calls.names_and_keys,
    "finish_reason": finish.finish_reason,
    "tool_choice_ignored": tool_choice.tool_choice_ignored,
    "stream_anomalies": streaming.stream_anomalies,
    "http_errors": http.http_errors,
    "empty_response": http.empty_response,
    "reasoning_swallows_answer": reasoning.reasoning_swallows_answer,
    "empty_turn_after_reasoning": reasoning.empty_turn_after_reasoning,
    "reasoning_in_content": reasoning.reasoning_in_content,
    "reasoning_tokens_outside_completion": reasoning.reasoning_tokens_outside_completion,
    "sampling_parameters": sampling.sampling_parameters,
}
RUN_CHECKS: dict[str, RunCheck] = {
    "id_format": ids.id_format,
    "duplicate_ids": ids.duplicate_ids,
    "repeated_calls": loops.repeated_calls,
    "tool_errors": tools.tool_errors,
    "what_the_host_kept": kept.what_the_host_kept,
    "tool_call_pairing": history.tool_call_pairing,
    "nondeterministic_output": sampling.nondeterministic_output,
    "reasoning_tokens_missing": reasoning.reasoning_tokens_missing,
}


RAW_TEXT_CHECKS: dict[str, StepCheck] = {"http_errors": http.http_errors}
"""The only checks of a raw completion run: it has no reasoning field, tool calls or chat
usage to judge; reading its text as a chat message would blame the host for what the
client asked for."""


def run_checks(run: Run, timings: Timings | None = None) -> list[Finding]:
    """All findings for `run`, ordered by step (run-level first) then kind; with `timings`,
    each check's time is added to it under the check's name."""
    per_step, per_run = (RAW_TEXT_CHECKS, {}) if run.raw_text else (STEP_CHECKS, RUN_CHECKS)
    if timings is not None:
        per_step, per_run = timings.checks(per_step), timings.checks(per_run)
    found: list[Finding] = []
    steps = run.steps
    # Each check over all the run's steps, then the next: a fifth cheaper than every check
    # on one step, then the next step (one check's code and data stay in the processor's
    # caches). The sorted order is the same either way: a step check finds only its own
    # step's findings, of kinds no other step check finds, and the sort is stable.
    for step_check in per_step.values():
        for step in steps:
            found.extend(step_check(step, run))
    for run_check in per_run.values():
        found.extend(run_check(run))
    return sorted(found, key=lambda f: (-1 if f.step is None else f.step, f.kind))

"""Calls the host's parser lost: the one reading that other checks give way to.

When a call the model made reaches the client as raw tokens, harmony markup, text in content,
or nothing at all, the turn is that loss and nothing else: it is no answer in the format the
request asked for, and no proof that the host ignored a forced `tool_choice` (it may have
forced the call and then lost it). The findings of the checks below decide, so a check that
defers to them can never disagree with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from analyzer.checks.calls import dropped_call, tool_call_as_text
from analyzer.checks.harmony import harmony_unparsed
from analyzer.checks.leaks import leaked_special_tokens
from analyzer.checks.records import Finding, Run, Step

PARSER_LOST: tuple[Callable[[Step, Run], Iterable[Finding]], ...] = (
    leaked_special_tokens,
    harmony_unparsed,
    tool_call_as_text,
    dropped_call,
)
"""Checks that find a call the model made and the host's parser lost: its tokens left in the
text, harmony left unparsed, the call written as text, a call dropped."""


def lost_to_parser(step: Step, run: Run) -> bool:
    """Whether any `PARSER_LOST` check has a finding on the step."""
    return any(next(iter(check(step, run)), None) is not None for check in PARSER_LOST)

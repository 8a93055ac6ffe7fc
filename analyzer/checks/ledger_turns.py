"""Turns that came back other than the host counted them, and the ledger entries put right.

The ledger reads a chain step's growth against the host's own count of the turn the request
sends back (its completion tokens minus its reasoning tokens). Two faults make that count
the count of another turn than the one that came back, each reported by its own finding:

- The host billed reasoning it sent inside the content (`reasoning_in_content`, no reasoning
  field): it goes back as content, so the whole completion is the turn that came back, and
  the entry is put right exactly.
- The host emptied a call's arguments (`empty_arguments`): the model generated them and the
  host billed them, but `{}` or `""` came back and went back. By how many of the host's
  tokens the count is off is not known (arguments are JSON, which no ratio learned from the
  run's reasoning measures), and the step also adds the tool's error for the call, a text
  unlike the run's other results: the step is left out of the fit.
- The host's reasoning parser ran past the calls and copied their markup into the reasoning
  (`leaked_special_tokens`): the copy goes back with the reasoning. Made of a family's special
  tokens (DeepSeek's `<｜tool▁call▁begin｜>`), it is one token each to the host's tokenizer and
  several to the estimate (nine for that one), by how many is not known: the step is left out
  of the fit. Left in, a held-out DeepSeek run's fit counted 0.45 of the reasoning estimated,
  which read as part of the reasoning not counted (flagged at 0.9). Hermes' `<tool_call>` tag
  is text the estimate counts as a tokenizer does: such a step stays, its markup counted.

Left in, steps whose turn lost its arguments grow by less than counted, which reads as the
other steps growing by more for each quote or `<` their arguments carry (a rewrite of the
history); reasoning sent back as content reads as reasoning not counted.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from analyzer.checks.emptied import emptied
from analyzer.checks.leaks import echoed_text, find_leaks
from analyzer.checks.ledger_entries import Entry
from analyzer.checks.records import Call, Run, Step
from traces.families import TOOL_CALL_TAG
from traces.normalize import estimate_tokens


def _blank(call: Call) -> bool:
    """Whether a call came with no arguments at all (`""`, `{}`): cheap, before the schema."""
    return not call.arguments_raw.strip() or (call.json_valid and call.arguments == {})


def emptied_calls(step: Step) -> list[Call]:
    """`step`'s calls whose arguments the host emptied, for a tool that requires some."""
    for call in step.calls:  # a loop, not `any` over a generator: once per step
        if _blank(call):
            break
    else:
        return []
    return [
        call for call in step.calls if _blank(call) and emptied(call, step.tools.get(call.name))
    ]


def reasoning_as_content(step: Step) -> int:
    """Reasoning tokens the host billed for `step` and sent inside the content (no reasoning
    came apart, and the content is long enough to hold them: `reasoning_in_content`'s own
    reading); 0 when none did."""
    billed = step.reasoning_tokens or 0
    if step.reasoning or billed <= 0 or step.reasoning_tokens_source != "reported":
        return 0
    content = step.content or ""
    if not content.strip() or 2 * estimate_tokens(content) < billed:
        return 0  # too short to hold it: the host keeps its reasoning hidden
    return billed


def leaked_markup(step: Step, run: Run) -> bool:
    """Whether `step`'s reasoning holds a family's special tokens a parser copied there (not
    what the model just read in a tool result: `leaks.holds_leak`): how many of the host's
    tokens they are when sent back is not known."""
    special = [leak for leak in find_leaks(step.reasoning) if leak.family != TOOL_CALL_TAG]
    if not special:
        return False
    echoed = echoed_text(step, run)
    return any(not all(t in echoed for t in leak.tokens) for leak in special)


def put_right(run: Run, entries: Sequence[Entry]) -> tuple[list[Entry], frozenset[int]]:
    """`entries` with the host's count of each turn whose reasoning came back as content put
    right, and the steps that sent back a turn whose arguments the host emptied or whose
    reasoning holds leaked call markup (to leave out of the fit)."""
    steps = run.steps
    billed: dict[int, int] = {}
    left: set[int] = set()
    for previous, step in itertools.pairwise(steps):
        if emptied_calls(previous) or leaked_markup(previous, run):
            left.add(step.index)
        elif tokens := reasoning_as_content(previous):
            billed[step.index] = tokens
    if not billed:
        return list(entries), frozenset(left)
    fixed = []
    for entry in entries:
        added = entry.added
        if entry.step in billed and added is not None and added.output_counted:
            # Counted: the completion minus its reasoning. Came back: all of it, as content.
            entry = entry._replace(added=added._replace(output=added.output + billed[entry.step]))
        fixed.append(entry)
    return fixed, frozenset(left)

"""Special tokens of any model family leaking into content or reasoning.

A serving stack whose tool parser misses the model's call syntax hands the raw tokens to the
client: the call is lost and the text is noise. The patterns are the families' own
(`traces.families`): each one's call format and the forms left when a detokenizer strips the
special tokens but keeps the words around them (`functions.bash:0 {…}`, harmony's
`analysis…assistantfinal`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from analyzer.checks.literals import may_match, needles
from analyzer.checks.records import Finding, Run, Step
from traces.families import FAMILIES

KINDS = frozenset({"leaked_special_tokens"})
"""Finding kinds this module emits (the catalogue describes each)."""

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (label, re.compile(pattern))
    for family in FAMILIES.values()
    for label, pattern in family.special_tokens
]
"""Every family's markup, looked for whatever model the run names: a host can serve another
family than its label says, and a leak is a leak."""
_NEEDLES = needles(pattern for _, pattern in _PATTERNS)
"""Literals one of which starts any leak: a text holding none is clean (one C scan)."""

_EXCERPT = 60


@dataclass(frozen=True)
class Leak:
    """One family's tokens found in a text."""

    family: str
    tokens: list[str]
    first_at: int


def find_leaks(text: str | None) -> list[Leak]:
    """Every family whose special tokens (or their stripped forms) occur in `text`."""
    if not text or not may_match(text, _NEEDLES):
        return []
    leaks: dict[str, Leak] = {}
    for family, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            leak = leaks.setdefault(family, Leak(family, [], match.start()))
            leak.tokens.append(match.group(0))
    return sorted(leaks.values(), key=lambda leak: leak.first_at)


def _excerpt(text: str, at: int) -> str:
    return text[max(0, at - _EXCERPT // 2) : at + _EXCERPT]


def _echoed(step: Step, run: Run) -> str:
    # What the model was just shown: a model quoting a tool error that names
    # `open_box</tool_call>` is reading, not leaking.
    previous = [s for s in run.steps if s.index < step.index][-1:]
    return "\n".join(r.output + (r.error or "") for s in previous for r in s.results)


def leaked_special_tokens(step: Step, run: Run) -> Iterator[Finding]:
    """Special tokens in content (an error: calls were lost) or reasoning (a warning)."""
    echoed: str | None = None  # read only once a leak is found: it walks the run
    for field, text in (("content", step.content), ("reasoning", step.reasoning)):
        leaks = find_leaks(text)
        if not leaks or text is None:
            continue
        echoed = _echoed(step, run) if echoed is None else echoed
        leaks = [leak for leak in leaks if not all(t in echoed for t in leak.tokens)]
        if not leaks:
            continue
        first = leaks[0]
        yield Finding(
            kind="leaked_special_tokens",
            severity="error" if field == "content" else "warning",
            layer="provider",
            step=step.index,
            evidence={
                "field": field,
                "families": [leak.family for leak in leaks],
                "tokens": sorted({t for leak in leaks for t in leak.tokens})[:10],
                "count": sum(len(leak.tokens) for leak in leaks),
                "excerpt": _excerpt(text, first.first_at),
            },
        )

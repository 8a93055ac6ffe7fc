"""Special tokens of any model family leaking into content or reasoning.

A serving stack whose tool parser misses the model's call syntax hands the raw tokens to the
client: the call is lost and the text is noise. The patterns are the families' own
(`traces.families`): each one's call format and the forms left when a detokenizer strips the
special tokens but keeps the words around them (`functions.bash:0 {…}`). gpt-oss's harmony
markup is found here too (a name or content carrying it is no call), but reported by
`harmony`, which grades its stripped forms.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from analyzer.checks.onset import previous_step
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

_HARMONY = frozenset(label for label, _ in FAMILIES["gpt-oss"].special_tokens)
"""gpt-oss's labels: its markup is a whole response format, reported as `harmony_unparsed`."""

_EXCERPT = 60


@dataclass(frozen=True)
class Leak:
    """One family's tokens found in a text."""

    family: str
    tokens: list[str]
    first_at: int


def find_leaks(text: str | None) -> list[Leak]:
    """Every family whose special tokens (or their stripped forms) occur in `text`."""
    if not text:
        return []
    leaks: dict[str, Leak] = {}
    for family, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            leak = leaks.setdefault(family, Leak(family, [], match.start()))
            leak.tokens.append(match.group(0))
    return sorted(leaks.values(), key=lambda leak: leak.first_at)


def _excerpt(text: str, at: int) -> str:
    return text[max(0, at - _EXCERPT // 2) : at + _EXCERPT]


def echoed_text(step: Step, run: Run) -> str:
    """The tool results the model was just shown (the previous step's): a model quoting a
    tool error that names `open_box</tool_call>` is reading, not leaking."""
    previous = previous_step(step, run)
    results = previous.results if previous is not None else ()
    return "\n".join(r.output + (r.error or "") for r in results)


def leaked_special_tokens(step: Step, run: Run) -> Iterator[Finding]:
    """Special tokens in content (an error: calls were lost) or reasoning (a warning).
    gpt-oss's harmony markup is left to `harmony.harmony_unparsed`, which grades it."""
    echoed: str | None = None
    for field, text in (("content", step.content), ("reasoning", step.reasoning)):
        found = [leak for leak in find_leaks(text) if leak.family not in _HARMONY]
        if not found or text is None:
            continue
        if echoed is None:
            echoed = echoed_text(step, run)
        leaks = [leak for leak in found if not all(t in echoed for t in leak.tokens)]
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

"""Special tokens of any model family leaking into content or reasoning.

A serving stack whose tool parser misses the model's call syntax hands the raw tokens to the
client: the call is lost and the text is noise. The patterns are the families' own
(`traces.families`): each one's call format and the forms left when a detokenizer strips the
special tokens but keeps the words around them (`functions.bash:0 {…}`). gpt-oss's harmony
markup is found here too (a name or content carrying it is no call), but reported by
`harmony`, which grades its stripped forms.

Who is to blame depends on whose syntax it is. A family's special tokens are the host's to
parse. `<tool_call>…</tool_call>` is Hermes' call format, plain text to any tokenizer: when
the run's family writes its calls that way (Qwen, GLM, Hermes and generic ChatML templates),
the host's parser should have read it; when the family's own format is another (Kimi,
DeepSeek, MiniMax, gpt-oss, Llama's and Mistral's JSON), the model wrote a syntax foreign to
its template, which no parser of its host reads: the model's mistake, as a call written as
JSON text is (`calls.tool_call_as_text`). The family is read off the model id, else the
dialect's; when neither names one the blame stays with the host, with less confidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from analyzer.checks.literals import may_match, needles
from analyzer.checks.onset import previous_step
from analyzer.checks.records import Finding, Layer, Run, Step
from traces.dialects import DIALECTS
from traces.families import FAMILIES, TOOL_CALL_TAG, family_named, json_call_syntax

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

_HARMONY = frozenset(label for label, _ in FAMILIES["gpt-oss"].special_tokens)
"""gpt-oss's labels: its markup is a whole response format, reported as `harmony_unparsed`."""

_EXCERPT = 60

SPECIAL_CONFIDENCE = 0.95
"""A family's own special tokens in text: its host's parser missed them (the tokens are
the model's; only a host serving another model than it says could make them foreign)."""
OWN_TAG_CONFIDENCE = 0.9
"""`<tool_call>` from a family whose calls are written so: the host's parser missed it."""
FOREIGN_TAG_CONFIDENCE = 0.8
"""`<tool_call>` from a family whose calls are written otherwise: the model's own slip (a
host serving another family than the model id says would make it the host's)."""
UNKNOWN_FAMILY_CONFIDENCE = 0.6
"""`<tool_call>` from a model of no known family: most that write it are Hermes-style, so
the host is likelier at fault, but the model may have written a syntax foreign to it."""


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


def echoed_text(step: Step, run: Run) -> str:
    """The tool results the model was just shown (the previous step's): a model quoting a
    tool error that names `open_box</tool_call>` is reading, not leaking."""
    previous = previous_step(step, run)
    results = previous.results if previous is not None else ()
    return "\n".join(r.output + (r.error or "") for r in results)


def holds_leak(text: str | None, step: Step, run: Run) -> bool:
    """Whether `text` (of `step`) holds a family's markup, harmony's too, that is not what
    the model just read in a tool result (`echoed_text`)."""
    found = find_leaks(text)
    if not found:
        return False
    echoed = echoed_text(step, run)
    return any(not all(t in echoed for t in leak.tokens) for leak in found)


@dataclass(frozen=True)
class Blame:
    """Whose fault a leak is, how sure that is, and what it rests on."""

    layer: Layer
    confidence: float
    family: str | None
    """The run's model family, when known."""
    syntax: str
    """`special` (a family's special tokens), `own_tag` (`<tool_call>` of a family that
    calls that way), `foreign_tag` (of one that does not) or `unknown_tag`."""


def _family_of(run: Run) -> tuple[str | None, bool | None]:
    """The run's model family and whether it writes its calls as `<tool_call>` blocks:
    the family its model id names (one of `FAMILIES`, else Llama's or Mistral's JSON calls),
    else the one its dialect's host serves; (None, None) when neither names one."""
    named = family_named(run.model)
    if named is not None:
        return named.name, named.tool_call_tag
    syntax = json_call_syntax(run.model)
    if syntax is not None:
        return syntax.name, False
    dialect = DIALECTS.get(run.dialect or "")
    if dialect is None:
        return None, None
    served = FAMILIES[dialect.family]
    return served.name, served.tool_call_tag


def blame(leaks: list[Leak], run: Run) -> Blame:
    """Whose fault `leaks` are: the host's unless they are nothing but `<tool_call>` tags
    from a family whose own call format is another (module docstring)."""
    family, tags_own = _family_of(run)
    if any(leak.family != TOOL_CALL_TAG for leak in leaks):
        return Blame("provider", SPECIAL_CONFIDENCE, family, "special")
    if tags_own is None:
        return Blame("provider", UNKNOWN_FAMILY_CONFIDENCE, family, "unknown_tag")
    if tags_own:
        return Blame("provider", OWN_TAG_CONFIDENCE, family, "own_tag")
    return Blame("model", FOREIGN_TAG_CONFIDENCE, family, "foreign_tag")


def leaked_special_tokens(step: Step, run: Run) -> list[Finding]:
    """Special tokens in content (an error: calls were lost) or reasoning (a warning),
    blamed by whose syntax they are (`blame`). gpt-oss's harmony markup is left to
    `harmony.harmony_unparsed`, which grades it."""
    findings: list[Finding] = []
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
        why = blame(leaks, run)
        findings.append(
            Finding(
                kind="leaked_special_tokens",
                severity="error" if field == "content" else "warning",
                layer=why.layer,
                step=step.index,
                evidence={
                    "field": field,
                    "families": [leak.family for leak in leaks],
                    "tokens": sorted({t for leak in leaks for t in leak.tokens})[:10],
                    "count": sum(len(leak.tokens) for leak in leaks),
                    "excerpt": _excerpt(text, first.first_at),
                    "run_family": why.family,
                    "syntax": why.syntax,
                },
                confidence=why.confidence,
            )
        )
    return findings

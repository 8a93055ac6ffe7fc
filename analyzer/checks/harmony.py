"""gpt-oss output the host did not parse: harmony markup in content or reasoning.

gpt-oss writes every message as `<|channel|>NAME<|message|>TEXT`: reasoning on `analysis`,
the answer on `final`, calls as `commentary to=functions.NAME` messages. A host without the
harmony parser hands the client all of it; one whose detokenizer drops special tokens hands it
the bare words run together (`analysisWe need…assistantfinalfour`, `assistantcommentary
to=functions.get_weather json{…}`). Either way the answer is mixed with the reasoning and the
calls are lost.

The tokens are seen directly. The stripped words are inferred, with a confidence that follows
the anchor: `assistantfinal` and `to=functions.NAME` are no English, a leading `analysisWe…`
alone might be an identifier; the bare words "analysis", "final" or "commentary" never count.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from analyzer.checks.leaks import echoed_text
from analyzer.checks.records import Finding, Run, Severity, Step
from traces.dialects import DIALECTS
from traces.families import FAMILIES, family_named

KINDS = frozenset({"harmony_unparsed"})
"""Finding kinds this module emits (the catalogue describes each)."""

_MARKUP = dict(FAMILIES["gpt-oss"].special_tokens)
_TOKENS = re.compile(_MARKUP["harmony"])
_STRIPPED = re.compile(_MARKUP["harmony-stripped"])
"""The family's own markup (`traces.families`): its special tokens, and the role and channel
names run together, or a call's recipient, once a detokenizer dropped the tokens."""

_HEAD = re.compile(r"\s*analysis(?=[A-Za-z0-9\"'“(*])")
"""The analysis channel's name glued to the first word of the reasoning, at the very start."""

_OWN_TOKENS = ("<|channel|>", "<|message|>", "<|constrain|>")
"""Tokens no other family's markup uses; `<|start|>`, `<|end|>` or `<|call|>` alone could be
another format's (Phi-3 ends its turns with `<|end|>`)."""

_SHARED_TOKENS_ONLY = 0.8
_HEAD_ONLY = 0.7
_RECIPIENT = 0.9
_JOINED = 0.95
_CORROBORATED = 0.99
_EXCERPT = 60


def _suspect(text: str) -> bool:
    """A cheap look for anything harmony could have left, before any regular expression."""
    return (
        "<|" in text
        or "assistant" in text
        or "to=functions." in text
        or text[:32].lstrip().startswith("analysis")
    )


def _markers(text: str, echoed: Callable[[], str]) -> tuple[str, list[str], float, int] | None:
    """(form, markers, confidence, first position) of harmony markup in `text`, leaving out
    markers the model was just shown in a tool result (quoting is not leaking)."""
    if "<|" in text:
        found = [m for m in _TOKENS.finditer(text) if m.group(0) not in echoed()]
        if found:
            tokens = [m.group(0) for m in found]
            own = any(t in _OWN_TOKENS for t in tokens)
            return "tokens", tokens, 1.0 if own else _SHARED_TOKENS_ONLY, found[0].start()
    stripped = []
    if "assistant" in text or "to=functions." in text:
        stripped = [m for m in _STRIPPED.finditer(text) if m.group(0) not in echoed()]
    head = _HEAD.match(text) if text[:24].lstrip().startswith("analysis") else None
    if not stripped and head is None:
        return None
    words = [m.group(0) for m in stripped]
    joined = any(w.startswith("assistant") for w in words)
    recipient = any(w.startswith("to=") for w in words)
    if joined and (head is not None or recipient):
        confidence = _CORROBORATED
    elif joined:
        confidence = _JOINED
    elif recipient:
        confidence = _CORROBORATED if head is not None else _RECIPIENT
    else:
        confidence = _HEAD_ONLY
    if head is not None:
        words.insert(0, "analysis")
    first = 0 if head is not None else stripped[0].start()
    return "stripped", words, confidence, first


def has_harmony(text: str | None) -> bool:
    """Whether `text` carries harmony markup, tokens or stripped words (echo not excluded)."""
    return bool(text) and _suspect(text or "") and _markers(text or "", lambda: "") is not None


def _expects_harmony(run: Run) -> bool:
    dialect = DIALECTS.get(run.dialect or "")
    return dialect is not None and dialect.reasoning_out == "harmony"


def speaks_harmony(step: Step, run: Run) -> bool:
    """Whether the model wrote the step in harmony (gpt-oss): the client read its channels out
    of content, the dialect serves them raw, or the model id names the family (a host whose
    parser hands the channels out as fields)."""
    if step.reasoning_source == "harmony" or _expects_harmony(run):
        return True
    family = family_named(run.model)
    return family is not None and family.name == "gpt-oss"


def _finding(
    step: Step, field: str, found: tuple[str, list[str], float, int], text: str
) -> Finding:
    form, markers, confidence, first = found
    evidence: dict[str, Any] = {
        "field": field,
        "form": form,
        "markers": sorted(set(markers))[:10],
        "count": len(markers),
        "excerpt": text[max(0, first - _EXCERPT // 2) : first + _EXCERPT],
    }
    severity: Severity = "error" if field == "content" else "warning"
    return Finding("harmony_unparsed", severity, "provider", step.index, evidence, confidence)


def harmony_unparsed(step: Step, run: Run) -> list[Finding]:
    """Harmony tokens or their stripped words in content (an error: the answer is mixed with
    the reasoning and calls are lost) or reasoning (a warning); and channels the client had
    to parse out of content itself, unless the dialect says the host serves them raw."""
    findings: list[Finding] = []
    if step.failed:
        return findings
    content = step.content or ""
    parsed = step.reasoning_source == "harmony"
    # Reasoning read from harmony channels came out of the content: reported with it.
    reasoning = "" if parsed else step.reasoning or ""
    in_content = bool(content) and _suspect(content)
    in_reasoning = bool(reasoning) and _suspect(reasoning)
    if not (in_content or in_reasoning or parsed):
        return findings
    echoed = cache(lambda: echoed_text(step, run))  # read only when markup is found
    found = _markers(content, echoed) if in_content else None
    if found is not None:
        findings.append(_finding(step, "content", found, content))
    elif parsed and not _expects_harmony(run):
        # The client's own reader took the channels apart; a plain OpenAI client shows them.
        evidence = {
            "field": "content",
            "form": "channels",
            "markers": ["<|channel|>"],
            "parsed_by_client": True,
            "dialect": run.dialect,
            "reasoning_head": (step.reasoning or "")[:_EXCERPT],
        }
        findings.append(Finding("harmony_unparsed", "error", "provider", step.index, evidence, 1.0))
    found = _markers(reasoning, echoed) if in_reasoning else None
    if found is not None:
        findings.append(_finding(step, "reasoning", found, reasoning))
    return findings

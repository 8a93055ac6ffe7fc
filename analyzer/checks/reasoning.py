"""Reasoning landing in the wrong place, and reasoning tokens counted wrongly.

A host whose reasoning parser never sees the end of thinking puts the whole answer in the
reasoning (Kimi on Dynamo with skip_special_tokens); one without a parser dumps the reasoning
into content, as a bare `<think>` block, or, when the prompt opened the tag, as text ended by
a lone `</think>` (harmony channels are `harmony`'s). Usage that omits reasoning tokens,
reports zero of them, or counts them outside completion tokens skews every cost and length
comparison between providers.
"""

from __future__ import annotations

import re
from typing import Any

from analyzer.checks.finish import budget_spent
from analyzer.checks.harmony import has_harmony
from analyzer.checks.onset import onset, previous_step
from analyzer.checks.records import Finding, Run, Step
from analyzer.checks.unseen import UNEXPLAINED_MIN, arguments_in_text, unexplained_tokens
from traces.dialects import DIALECTS
from traces.normalize import estimate_tokens

KINDS = frozenset(
    {
        "reasoning_swallows_answer",
        "empty_turn_after_reasoning",
        "reasoning_in_content",
        "reasoning_tokens_missing",
        "reasoning_tokens_outside_completion",
    }
)
"""Finding kinds this module emits (the catalogue describes each)."""

_INLINE = ("think_tag", "harmony")
"""Reasoning locations that put the reasoning inside `content` by design."""

_QUOTES = ("`", '"', "'", "“", "‘")
"""A `</think>` right after one of these is the tag quoted in an answer, not the end of
reasoning."""

_SEEN = 1.0
"""The tag itself was seen where the dialect promises a field: no inference."""
_UNCLOSED = 0.95
_CLOSE_ONLY = 0.9
_CLOSE_ONLY_COUNTED = 0.97
"""A lone `</think>` the host also counted reasoning tokens for: usage corroborates it."""
_COUNTED_ONLY = 0.75
"""No tag at all, only reasoning tokens in usage and a content long enough to hold them."""


_CLOSERS = "\"'”’)]}*_`"
"""Quotes, brackets and emphasis that may follow a sentence's final punctuation."""
_SENTENCE_END = (".", "!", "?", "…", "。", "！", "？")
_SENTENCES = re.compile(r"(?<=[.!?…。！？])\s+")
_TAIL = 200
_CUT_OFF = 0.8
_CUT_OFF_NAMING_TOOL = 0.9
"""Thinking cut off mid-sentence; and, besides, naming a declared tool it was about to call."""
_UNCOUNTED = 0.15
"""Less sure without a token count (no usage, or usage over several choices not all at hand,
`unseen.unexplained_tokens`): nothing rules out a call made after the thought and lost,
though a model finishes its sentence before it calls, so a thought cut off mid-sentence still
most likely ended the turn."""


def _cut_off(text: str) -> bool:
    """Whether `text` stops mid-sentence: no final punctuation (a colon announces more)."""
    ending = text.rstrip().rstrip(_CLOSERS).rstrip()
    return bool(ending) and not ending.endswith(_SENTENCE_END)


def _reasoned_well(step: Step) -> bool:
    return bool(step.reasoning) and bool(step.calls or (step.content or "").strip())


def empty_turn(step: Step, run: Run) -> tuple[dict[str, Any], float] | None:
    """(evidence, confidence) when a turn in the middle of a tool chain (the step before made
    calls, tools are still offered) ended `stop` with its reasoning cut off mid-sentence and
    nothing else: the model stopped thinking and never acted. None otherwise, and when the
    tokens or the reasoning's tail show a call was made and lost (`dropped_call`); without a
    token count, the cut-off thought alone decides, less surely."""
    reasoning = step.reasoning
    if step.failed or step.calls or (step.content or "").strip() or not reasoning:
        return None
    if step.finish_reason != "stop" or not step.tools or not _cut_off(reasoning):
        return None
    if budget_spent(step):
        return None  # the budget cut the thinking off, whatever finish_reason says
    previous = previous_step(step, run)
    if previous is None or not previous.calls:
        return None  # not mid-chain: nothing was waiting for an action
    unexplained = unexplained_tokens(step, run)
    if unexplained is not None and unexplained >= UNEXPLAINED_MIN:
        return None  # tokens went somewhere invisible: dropped_call
    if arguments_in_text(reasoning, step.tools):
        return None  # the reasoning ends with a call's arguments: dropped_call
    tail = reasoning.rstrip()[-_TAIL:]
    last = _SENTENCES.split(tail)[-1]  # the unfinished sentence: what it was about to do
    named = sorted(n for n in step.tools if re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", last))
    evidence: dict[str, Any] = {
        "finish_reason": step.finish_reason_raw,
        "reasoning_tail": tail,
        "completion_tokens": step.completion_tokens,
        "unexplained_tokens": unexplained,
        "previous_calls": [call.name for call in previous.calls],
        "tools_named": named,
        **onset(run, step.index, lambda s: s.index == step.index, _reasoned_well),
    }
    confidence = _CUT_OFF_NAMING_TOOL if named else _CUT_OFF
    return evidence, confidence if unexplained is not None else round(confidence - _UNCOUNTED, 2)


def empty_turn_after_reasoning(step: Step, run: Run) -> list[Finding]:
    """A turn after the first that thought, stopped mid-sentence and did nothing more,
    though the chain was waiting for its next call or answer: what hosts produce once their
    template renders the history wrong."""
    findings: list[Finding] = []
    found = empty_turn(step, run)
    if found is not None:
        evidence, confidence = found
        findings.append(
            Finding(
                "empty_turn_after_reasoning", "error", "provider", step.index, evidence, confidence
            )
        )
    return findings


def _ended_by_request(step: Step) -> bool:
    """Whether the request itself may have ended the turn before any answer: its token budget
    ran out (finish `length`, or the budget spent whatever finish_reason says), or one of its
    stop sequences may have matched where the answer began (a host that honours `stop` leaves
    no content and says `stop`)."""
    return step.finish_reason == "length" or budget_spent(step) or bool(step.stop_sequences)


def reasoning_swallows_answer(step: Step, run: Run) -> list[Finding]:
    """A turn without calls or content whose generated tokens are all in the reasoning, unless
    the request's own budget or stop sequences ended it (`_ended_by_request`)."""
    findings: list[Finding] = []
    if step.failed or step.calls or (step.content or "").strip() or not step.reasoning:
        return findings
    if _ended_by_request(step):
        return findings
    if arguments_in_text(step.reasoning, step.tools):
        return findings  # a call's arguments, not an answer: reported as dropped_call
    if empty_turn(step, run) is not None:
        return findings  # thinking cut off mid-chain, no answer in it: empty_turn_after_reasoning
    unexplained = unexplained_tokens(step, run)
    if step.tools and (unexplained is None or unexplained >= UNEXPLAINED_MIN):
        return findings  # tokens went somewhere invisible: a dropped call, reported as such
    findings.append(
        Finding(
            "reasoning_swallows_answer",
            "error",
            "provider",
            step.index,
            {
                "reasoning_source": step.reasoning_source,
                "reasoning_tail": step.reasoning[-200:],
                "completion_tokens": step.completion_tokens,
            },
        )
    )
    return findings


def _reasoning_out(run: Run) -> str | None:
    dialect = DIALECTS.get(run.dialect or "")
    return dialect.reasoning_out if dialect else None


def _reports_reasoning(step: Step) -> bool:
    return step.reasoning_tokens_source == "reported" and (step.reasoning_tokens or 0) > 0


def _in_content(step: Step, expected: str | None) -> tuple[dict[str, object], float] | None:
    """(evidence, confidence) when the reasoning came inside content against the host's
    promise, else None."""
    content = (step.content or "").strip()
    source = step.reasoning_source
    if source == "think_close":
        # Only `</think>` arrived (after an empty thought, too): the template opened the block
        # in the prompt and no reasoning parser ran. No host's intended form, whatever its
        # dialect.
        reasoning = step.reasoning or ""
        if reasoning.endswith(_QUOTES) or content.startswith(_QUOTES):
            return None  # the tag quoted in prose (`</think>`), not the end of thinking
        counted = _reports_reasoning(step)
        evidence: dict[str, object] = {
            "reasoning_source": source,
            "form": "close_tag_only",
            "expected": expected,
            "reasoning_tail": reasoning[-120:],
            "content_head": content[:120],
        }
        return evidence, _CLOSE_ONLY_COUNTED if counted else _CLOSE_ONLY
    if step.reasoning and source == "think_tag":
        # Without a dialect the inline form may be the host's own (MiniMax's <think>).
        if expected is not None and expected not in _INLINE:
            return {"reasoning_source": source, "form": "think_block", "expected": expected}, _SEEN
        return None
    if content.startswith("<think>") and not step.reasoning:
        # Nothing parsed it: the whole reasoning is the visible answer's first paragraph.
        return {"form": "unclosed", "content_head": content[:200], "expected": expected}, _UNCLOSED
    if not step.reasoning and content and _reports_reasoning(step) and not has_harmony(content):
        # (Harmony words in content carry the reasoning too: harmony_unparsed reports them.)
        reported = step.reasoning_tokens or 0
        if estimate_tokens(content) * 2 < reported:
            return None  # too short to hold it: the host keeps its reasoning hidden
        evidence = {"form": "untagged", "reasoning_tokens": reported, "content_head": content[:200]}
        return evidence, _COUNTED_ONLY
    return None


def reasoning_in_content(step: Step, run: Run) -> list[Finding]:
    """The reasoning came inside content although the host should separate it: an inline
    `<think>` block where the dialect promises a field, text ended by a lone `</think>`, a
    `<think>` never closed, or no reasoning at all while usage reports reasoning tokens
    that the content is long enough to hold."""
    findings: list[Finding] = []
    if step.failed or step.reasoning_source == "harmony":
        return findings  # harmony channels in content: harmony_unparsed
    found = _in_content(step, _reasoning_out(run))
    if found is not None:
        evidence, confidence = found
        findings.append(
            Finding("reasoning_in_content", "warning", "provider", step.index, evidence, confidence)
        )
    return findings


def _unreported(step: Step) -> tuple[str | None, int] | None:
    """How `step`'s reasoning went uncounted, and its tokens as estimated: the usage's
    source of its count (not `reported`), or `reported` for a count of zero; None when the
    usage counted it, or the step had none."""
    if step.failed or not step.reasoning:
        return None
    source = step.reasoning_tokens_source
    if source != "reported":
        return source, step.reasoning_tokens or 0
    if step.reasoning_tokens == 0:
        visible = estimate_tokens(step.reasoning)
        if visible >= UNEXPLAINED_MIN:
            # LiteLLM's hosted_vllm route reports 0 while the reasoning is right there.
            return source, visible
    return None


def reasoning_tokens_missing(run: Run) -> list[Finding]:
    """Reasoning present but its tokens unreported (or reported as zero): one finding per
    run and way they went uncounted, at its first step, with the steps it pools.

    A host that leaves them out does so on every step: a finding a step would bury the
    run's other findings under one fact (a million of them over a million steps, and a
    tenth of the analysis's time spent storing them)."""
    pooled: dict[str | None, list[tuple[int, int]]] = {}
    for step in run.steps:
        found = _unreported(step)
        if found is not None:
            pooled.setdefault(found[0], []).append((step.index, found[1]))
    findings = []
    for source, steps in pooled.items():
        evidence: dict[str, Any] = {"source": source}
        if source == "reported":
            evidence["reported"] = 0
        evidence |= {
            "estimated": sum(tokens for _, tokens in steps),
            "affected_steps": len(steps),
            "steps": [steps[0][0], steps[-1][0]],
        }
        findings.append(
            Finding("reasoning_tokens_missing", "info", "provider", steps[0][0], evidence)
        )
    return findings


def reasoning_tokens_outside_completion(step: Step, run: Run) -> list[Finding]:
    """Reasoning tokens reported outside completion tokens (more than the completion, or a
    total above prompt and completion)."""
    findings: list[Finding] = []
    if step.failed:
        return findings
    if step.reasoning_tokens_source != "reported" or step.completion_tokens is None:
        return findings
    numbers = {
        "prompt_tokens": step.prompt_tokens,
        "completion_tokens": step.completion_tokens,
        "reasoning_tokens": step.reasoning_tokens,
        "total_tokens": step.total_tokens,
    }
    over_completion = (step.reasoning_tokens or 0) > step.completion_tokens
    over_total = (
        step.total_tokens is not None
        and step.prompt_tokens is not None
        and step.total_tokens > step.prompt_tokens + step.completion_tokens
    )
    if over_completion or over_total:
        findings.append(
            Finding(
                "reasoning_tokens_outside_completion", "warning", "provider", step.index, numbers
            )
        )
    return findings

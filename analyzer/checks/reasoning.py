"""Reasoning landing in the wrong place, and reasoning tokens counted wrongly.

A host whose reasoning parser never sees the end of thinking puts the whole answer in the
reasoning (Kimi on Dynamo with skip_special_tokens); one without a parser dumps the reasoning
into content, as a bare `<think>` block or harmony channels the client must strip itself.
Usage that omits reasoning tokens, reports zero of them, or counts them outside completion
tokens skews every cost and length comparison between providers.
"""

from __future__ import annotations

from collections.abc import Iterator

from analyzer.checks.calls import UNEXPLAINED_MIN, arguments_in_text, unexplained_tokens
from analyzer.checks.records import Finding, Run, Step
from traces.dialects import DIALECTS
from traces.normalize import estimate_tokens

KINDS = frozenset(
    {
        "reasoning_swallows_answer",
        "reasoning_in_content",
        "reasoning_tokens_missing",
        "reasoning_tokens_outside_completion",
    }
)
"""Finding kinds this module emits (the catalogue describes each)."""

_INLINE = ("think_tag", "harmony")
"""Reasoning sources that mean the reasoning arrived inside `content`."""


def reasoning_swallows_answer(step: Step, run: Run) -> Iterator[Finding]:
    """A turn without calls or content whose generated tokens are all in the reasoning."""
    if step.failed or step.calls or (step.content or "").strip() or not step.reasoning:
        return
    if arguments_in_text(step.reasoning, step.tools):
        return  # a call's arguments, not an answer: reported as dropped_call
    unexplained = unexplained_tokens(step)
    if step.tools and (unexplained is None or unexplained >= UNEXPLAINED_MIN):
        return  # tokens went somewhere invisible: a dropped call, reported as such
    yield Finding(
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


def _reasoning_out(run: Run) -> str | None:
    dialect = DIALECTS.get(run.dialect or "")
    return dialect.reasoning_out if dialect else None


def _reports_reasoning(step: Step) -> bool:
    return step.reasoning_tokens_source == "reported" and (step.reasoning_tokens or 0) > 0


def reasoning_in_content(step: Step, run: Run) -> Iterator[Finding]:
    """The reasoning came inside content although the host should separate it: an inline
    `<think>` block or harmony channels where the dialect promises a field, a `<think>`
    never closed, or no reasoning at all while usage reports reasoning tokens."""
    if step.failed:
        return
    expected = _reasoning_out(run)
    content = (step.content or "").strip()
    evidence: dict[str, object] | None = None
    if step.reasoning and step.reasoning_source in _INLINE:
        # Without a dialect the inline form may be the host's own (MiniMax's <think>).
        if expected is not None and expected not in _INLINE:
            evidence = {"reasoning_source": step.reasoning_source, "expected": expected}
    elif content.startswith("<think>") and not step.reasoning:
        # Nothing parsed it: the whole reasoning is the visible answer's first paragraph.
        evidence = {"content_head": content[:200], "expected": expected}
    elif not step.reasoning and content and _reports_reasoning(step):
        evidence = {"reasoning_tokens": step.reasoning_tokens, "content_head": content[:200]}
    if evidence is not None:
        yield Finding("reasoning_in_content", "warning", "provider", step.index, evidence)


def reasoning_tokens(step: Step, run: Run) -> Iterator[Finding]:
    """Reasoning present but its tokens unreported (or reported as zero); or reported
    outside completion tokens."""
    if step.failed:
        return
    if step.reasoning and step.reasoning_tokens_source != "reported":
        yield Finding(
            "reasoning_tokens_missing",
            "info",
            "provider",
            step.index,
            {"source": step.reasoning_tokens_source, "estimated": step.reasoning_tokens},
        )
    elif step.reasoning and step.reasoning_tokens == 0:
        visible = estimate_tokens(step.reasoning)
        if visible >= UNEXPLAINED_MIN:
            # LiteLLM's hosted_vllm route reports 0 while the reasoning is right there.
            yield Finding(
                "reasoning_tokens_missing",
                "info",
                "provider",
                step.index,
                {"source": "reported", "reported": 0, "estimated": visible},
            )
    if step.reasoning_tokens_source != "reported" or step.completion_tokens is None:
        return
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
        yield Finding(
            "reasoning_tokens_outside_completion", "warning", "provider", step.index, numbers
        )

"""Reasoning landing in the wrong place, and reasoning tokens counted wrongly.

A host whose reasoning parser never sees the end of thinking puts the whole answer in the
reasoning (Kimi on Dynamo with skip_special_tokens); one without a parser dumps the reasoning
into content. Usage that omits reasoning tokens, or counts them outside completion tokens,
skews every cost and length comparison between providers.
"""

from __future__ import annotations

from collections.abc import Iterator

from analyzer.checks.calls import UNEXPLAINED_MIN, unexplained_tokens
from analyzer.checks.records import Finding, Run, Step


def reasoning_swallows_answer(step: Step, run: Run) -> Iterator[Finding]:
    """A turn without calls or content whose generated tokens are all in the reasoning."""
    if step.failed or step.calls or (step.content or "").strip() or not step.reasoning:
        return
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


def reasoning_in_content(step: Step, run: Run) -> Iterator[Finding]:
    """No reasoning surfaced although usage reports reasoning tokens, and content has text:
    the host did not separate the reasoning from the answer."""
    if step.failed or step.reasoning or not (step.content or "").strip():
        return
    if step.reasoning_tokens_source == "reported" and (step.reasoning_tokens or 0) > 0:
        yield Finding(
            "reasoning_in_content",
            "warning",
            "provider",
            step.index,
            {"reasoning_tokens": step.reasoning_tokens, "content_head": (step.content or "")[:200]},
        )


def reasoning_tokens(step: Step, run: Run) -> Iterator[Finding]:
    """Reasoning present but its tokens unreported; or reported outside completion tokens."""
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

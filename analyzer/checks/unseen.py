"""What a turn generated that no client sees: completion tokens the visible text and the
response format's markup do not account for, and a call's arguments left at the end of the
reasoning.

A turn that shows no call and no content is one of three things, and the checks tell them
apart from this evidence: a call the host's parser lost (`calls.dropped_call`), thinking that
stopped mid-chain (`reasoning.empty_turn_after_reasoning`), or the answer left inside the
reasoning (`reasoning.reasoning_swallows_answer`).
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from analyzer.checks.harmony import speaks_harmony
from analyzer.checks.records import OtherChoice, Run, Step
from traces.normalize import estimate_tokens

UNEXPLAINED_MIN = 8
"""Completion tokens beyond the visible text that count as 'something was generated'; the
estimate of visible tokens is rough, so a handful of tokens of slack is not evidence."""

HARMONY_ANSWER_MARKUP = 4
"""Completion tokens of harmony markup around a gpt-oss answer that no client sees:
`<|channel|>final<|message|>` … `<|return|>` (the prompt opened the message)."""
HARMONY_REASONING_MARKUP = 6
"""…and, before it, the analysis message: `<|channel|>analysis<|message|>` … `<|end|>`, then
`<|start|>assistant` opening the final one. Ten tokens in all for a turn that reasoned, more
than `UNEXPLAINED_MIN`: uncounted, every empty turn of gpt-oss would look like a lost call.
Other families' markup (think tags, an end token: two or three) fits within the slack."""

CHOICE_MARKUP = 6
"""Tokens of markup no client sees around another choice of `n` that made no call (think
tags, an end token): within `UNEXPLAINED_MIN` for one choice, not for two (the simulator's
families: 4 to 8 over two choices that made none). A gpt-oss choice has its own
(`HARMONY_ANSWER_MARKUP`, `HARMONY_REASONING_MARKUP`)."""

_DECODER = json.JSONDecoder()
_TAIL = 2000
"""Characters at the end of a reasoning text searched for a call's arguments."""


def _markup(reasoned: bool, harmony: bool) -> int:
    """Completion tokens of a gpt-oss choice's harmony markup that no client sees."""
    if not harmony:
        return 0
    return HARMONY_ANSWER_MARKUP + (HARMONY_REASONING_MARKUP if reasoned else 0)


def call_overhead(run: Run, skip: int) -> float | None:
    """Tokens the run's host counts for one call beyond its name and arguments (estimated):
    the template's wrapping and the turn's own markup, shared out over the turn's calls. Read
    off the run's steps (other than `skip`) whose choice 0 made calls and whose every choice
    shows what it generated: the median of completion tokens less their text, a call. None
    without such a step. Templates wrap a call in 5 to 27 tokens (the simulator's families):
    no constant stands for all of them."""
    per_call = []
    for step in run.steps:
        if step.index == skip or step.failed or not step.calls or step.completion_tokens is None:
            continue
        others = step.other_choices or () if step.choices_counted > 1 else ()
        if len(others) != step.choices_counted - 1:
            continue  # choices not at hand
        if any(not choice.calls and not choice.content.strip() for choice in others):
            continue  # a choice showing nothing may have lost something itself
        reasoning = estimate_tokens(step.reasoning or "")
        text = estimate_tokens(step.content or "")
        calls = len(step.calls)
        for call in step.calls:
            text += estimate_tokens(call.name) + estimate_tokens(call.arguments_raw)
        for choice in others:
            reasoning += estimate_tokens(choice.reasoning)
            text += estimate_tokens(choice.content)
            calls += len(choice.calls)
            for name, arguments in choice.calls:
                text += estimate_tokens(name) + estimate_tokens(arguments)
        if step.reasoning_tokens_source == "reported" and step.reasoning_tokens:
            reasoning = max(reasoning, step.reasoning_tokens)
        per_call.append((step.completion_tokens - reasoning - text) / calls)
    return statistics.median(per_call) if per_call else None


def _other_tokens(
    others: tuple[OtherChoice, ...], harmony: bool, per_call: float
) -> tuple[int, float]:
    """(reasoning, everything else) the other choices of `n` generated, estimated: their
    text, their calls (name and arguments, and `per_call` each: `call_overhead`, which takes
    in the turn's markup) or, without calls, their format's markup (`CHOICE_MARKUP`, or
    gpt-oss's own)."""
    reasoning, rest = 0, 0.0
    for choice in others:
        reasoning += estimate_tokens(choice.reasoning)
        rest += estimate_tokens(choice.content)
        if not choice.calls:
            rest += _markup(bool(choice.reasoning), harmony) if harmony else CHOICE_MARKUP
        for name, arguments in choice.calls:
            rest += estimate_tokens(name) + estimate_tokens(arguments) + per_call
    return reasoning, rest


def unexplained_tokens(step: Step, run: Run) -> int | None:
    """Completion tokens not accounted for by the visible reasoning and content (estimated)
    and the markup of the model's response format; None without usage, or when the usage
    also counts choices of `n` the raw response does not hold, or whose calls no step of the
    run tells the cost of (then the step's own tokens are unknown). The other choices'
    tokens are taken out of a usage that counts them."""
    if step.completion_tokens is None:
        return None
    harmony = speaks_harmony(step, run)
    other_reasoning, other_rest = 0, 0.0
    if step.choices_counted > 1:
        others = step.other_choices
        if others is None or len(others) != step.choices_counted - 1:
            return None
        per_call = call_overhead(run, step.index) if any(c.calls for c in others) else 0.0
        if per_call is None:
            return None
        other_reasoning, other_rest = _other_tokens(others, harmony, per_call)
    reasoning = estimate_tokens(step.reasoning or "") + other_reasoning
    if step.reasoning_tokens_source == "reported" and step.reasoning_tokens:
        # The host's own count of the reasoning beats a word count: real tokenizers split
        # ids and numbers finer, and a long thought would otherwise look like a lost call.
        # (With `n`, it counts every choice's reasoning, as `reasoning` then does.)
        reasoning = max(reasoning, step.reasoning_tokens)
    markup = _markup(bool(step.reasoning), harmony)
    visible = reasoning + estimate_tokens(step.content or "") + markup + other_rest
    return round(step.completion_tokens - visible)


def decode_at(text: str, start: int) -> tuple[Any, int] | None:
    """The JSON value starting at `start` in `text` and where it ends; None if none does."""
    try:
        return _DECODER.raw_decode(text, start)
    except ValueError:
        return None


def _fits(arguments: dict[str, Any], schema: dict[str, Any]) -> bool:
    properties = schema.get("properties")
    if not arguments or not isinstance(properties, dict):
        return False
    required = schema.get("required") or []
    return set(arguments) <= set(properties) and set(required) <= set(arguments)


def arguments_in_text(text: str | None, tools: dict[str, dict[str, Any]]) -> str | None:
    """The tool whose complete arguments object ends `text`, if one does.

    A harmony parser that misroutes the commentary channel streams the call's JSON into the
    reasoning (gpt-oss on vLLM 0.10.2): the call is lost, its arguments sit at the end.
    """
    if not text or not tools:
        return None
    tail = text[-_TAIL:].rstrip()
    for start in (i for i, ch in enumerate(tail) if ch == "{"):
        decoded = decode_at(tail, start)
        if decoded is None or decoded[1] != len(tail) or not isinstance(decoded[0], dict):
            continue
        fitting = [name for name, schema in tools.items() if _fits(decoded[0], schema)]
        if fitting:
            return fitting[0]
    return None

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
from typing import Any

from analyzer.checks.harmony import speaks_harmony
from analyzer.checks.records import Run, Step
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

_DECODER = json.JSONDecoder()
_TAIL = 2000
"""Characters at the end of a reasoning text searched for a call's arguments."""


def unexplained_tokens(step: Step, run: Run) -> int | None:
    """Completion tokens not accounted for by the visible reasoning and content (estimated)
    and the markup of the model's response format; None without usage, or when the usage
    also counts choices the step does not keep."""
    if step.completion_tokens is None or step.choices_counted > 1:
        return None
    reasoning = estimate_tokens(step.reasoning or "")
    if step.reasoning_tokens_source == "reported" and step.reasoning_tokens:
        # The host's own count of the reasoning beats a word count: real tokenizers split
        # ids and numbers finer, and a long thought would otherwise look like a lost call.
        reasoning = max(reasoning, step.reasoning_tokens)
    markup = 0
    if speaks_harmony(step, run):
        markup = HARMONY_ANSWER_MARKUP + (HARMONY_REASONING_MARKUP if step.reasoning else 0)
    return step.completion_tokens - reasoning - estimate_tokens(step.content or "") - markup


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

"""Whose fault a context overflow is: the size of the request the client sent, against the
model's context window.

A history that outgrew the window is the client's: it decides what it sends, and did not
trim. But a host can overflow its own window on a small request (a server whose internal
tool-call loop grew the prompt, a default completion budget larger than the window), and
then blaming the client hides a host defect. The request's size is the prompt the host
reported for it, else an estimate of its messages and tools, plus the completion budget the
client asked for; the window is read from the error text when it states one. A request
below `HOST_RATIO` of the window cannot have overflowed it by itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from analyzer.checks.records import Layer, Step
from traces.normalize import estimate_tokens

HOST_RATIO = 0.5
"""A request (prompt + asked completion) under this share of the window is too small to have
overflowed it: the host is at fault. The estimate of an unreported prompt counts words and
punctuation, rarely off by half for a chat request, so half the window leaves that margin."""

UNKNOWN_LIMIT_CONFIDENCE = 0.6
"""How sure the client is at fault when the error states no window: histories outgrowing it
are the usual cause, but nothing here measured it."""

_LIMIT = (
    # OpenAI, vLLM, llama-cpp-python, DeepSeek: "maximum context length is 8192 tokens".
    re.compile(r"maximum context length is (\d+)"),
    # llama-cpp-python's own wording before its server rewrites it.
    re.compile(r"exceed context window of (\d+)"),
    # llama.cpp's exceed_context_size_error carries the window as a field.
    re.compile(r'"n_ctx"\s*:\s*(\d+)'),
    # Anthropic-style: "prompt is too long: 210000 tokens > 200000 maximum".
    re.compile(r"tokens? > (\d+) maximum"),
    # "input length and `max_tokens` exceed context limit: 199759 + 8192 > 200000".
    re.compile(r"context limit: \d+ \+ \d+ > (\d+)"),
    re.compile(r"context (?:length|window|size) (?:is|of) (\d+)"),
)
"""Where an overflow's error text states the model's context window (lower case)."""

_HOST_PROMPT = (
    re.compile(r"\((\d+) in the messages"),
    re.compile(r"your request has (\d+) input tokens"),
    re.compile(r"prompt contains at least (\d+) input tokens"),
    re.compile(r'"n_prompt_tokens"\s*:\s*(\d+)'),
    re.compile(r"prompt is too long: (\d+) tokens"),
    re.compile(r"context limit: (\d+) \+"),
)
"""Where it states the prompt the host counted: evidence only (a host that counted far more
than was sent grew the prompt itself), never the request's size."""


@dataclass(frozen=True)
class Blame:
    """Who overflowed the window, how sure that is, and the numbers behind it."""

    layer: Layer
    confidence: float
    evidence: dict[str, Any]


def _first(patterns: tuple[re.Pattern[str], ...], text: str) -> int | None:
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return int(match.group(1))
    return None


def _prompt(step: Step) -> tuple[int | None, str]:
    """The request's prompt tokens and where the number came from."""
    if step.prompt_tokens is not None:
        return step.prompt_tokens, "reported"
    if not step.request_messages:
        return None, "unknown"
    sent = [*step.request_messages, *(step.request_params.get("tools") or [])]
    return estimate_tokens(json.dumps(sent, ensure_ascii=False)), "estimated"


def blame(step: Step, error: dict[str, Any]) -> Blame:
    """Who is at fault for the context overflow `error` (a failed attempt of `step`)."""
    text = f"{error.get('message') or ''} {error.get('body') or ''}".lower()
    limit = _first(_LIMIT, text)
    prompt, source = _prompt(step)
    asked = step.max_tokens
    evidence: dict[str, Any] = {
        "prompt_tokens": prompt,
        "prompt_source": source,
        "max_tokens": asked,
        "context_limit": limit,
        "limit_source": "error message" if limit else "not stated",
        "host_prompt_tokens": _first(_HOST_PROMPT, text),
        "host_ratio": HOST_RATIO,
    }
    if limit is None or prompt is None:
        return Blame("client", UNKNOWN_LIMIT_CONFIDENCE, evidence)
    request = prompt + (asked or 0)
    ratio = request / limit
    evidence.update(request_tokens=request, ratio=round(ratio, 3))
    if ratio < HOST_RATIO:
        # The smaller the request, the surer: half the window is a coin toss, nothing is not.
        return Blame("provider", round(0.5 + 0.45 * (1 - ratio / HOST_RATIO), 2), evidence)
    return Blame(
        "client", round(min(0.95, 0.5 + 0.45 * (ratio - HOST_RATIO) / HOST_RATIO), 2), evidence
    )

"""Reading a chat-completions response that arrived whole: the headers worth keeping, the
assistant message, finish reason and usage of the body, and the upstream a router names.

Streams are read by `traces.sse`; failed and malformed responses become errors in
`traces.http_errors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KEPT_HEADERS = (
    "x-request-id",
    "request-id",
    "openai-processing-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "retry-after",
    "retry-after-ms",
    "x-openrouter-provider",
)
"""Response headers worth keeping; every other header (cookies included) is dropped."""


def upstream_of(body: dict[str, Any]) -> str | None:
    """The upstream host a router names at the top level of a completion or chunk.

    OpenRouter sends `"provider": "Moonshot AI"`; direct hosts send nothing there.
    """
    value = body.get("provider")
    return value if isinstance(value, str) and value else None


def read_completion(
    parsed: Any,
) -> tuple[dict[str, Any], str | None, dict[str, Any] | None]:
    """(assistant message, raw finish_reason, usage) of a parsed `chat.completion`.

    Raises KeyError, IndexError, TypeError or ValueError when it is not one.
    """
    choice = parsed["choices"][0]
    message = dict(choice["message"])
    return message, choice.get("finish_reason"), parsed.get("usage")


def no_choices(parsed: Any) -> bool:
    """Whether a parsed 200 body is a completion that holds no choice at all (`choices: []`
    or null) and no error object: the host answered, but generated nothing."""
    return (
        isinstance(parsed, dict)
        and "choices" in parsed
        and not parsed["choices"]
        and "error" not in parsed
    )


CHOICES_MISSING = "choices_missing"
"""Anomaly: fewer choices came back than the request's `n` asked for."""
LOGPROBS_MISSING = "logprobs_missing"
"""Anomaly: the request asked for `logprobs` (and `top_logprobs`) and the answer lacks them."""
SAMPLING_ANOMALIES = frozenset({CHOICES_MISSING, LOGPROBS_MISSING})
"""Anomalies that compare the answer with the sampling parameters of its request."""


@dataclass(frozen=True)
class ChoiceReading:
    """What the choices of an answer hold beyond choice 0's message: how many there were
    and the log probabilities of choice 0 (the other choices stay in the raw response)."""

    count: int
    logprob_tokens: int | None = None
    """Tokens of choice 0 that carry a log probability (None: no `logprobs` object)."""
    top_logprobs: int | None = None
    """The fewest alternatives any of those tokens listed (None: no token had a list)."""


def logprob_counts(logprobs: Any) -> tuple[int, int | None] | None:
    """(tokens, fewest alternatives per token) of one `choices[].logprobs` object (or of one
    streamed piece of it); None when there is none."""
    if not isinstance(logprobs, dict):
        return None
    tokens = logprobs.get("content")
    if not isinstance(tokens, list):
        return None
    tops = [
        len(token["top_logprobs"])
        for token in tokens
        if isinstance(token, dict) and isinstance(token.get("top_logprobs"), list)
    ]
    return len(tokens), min(tops) if tops else None


def read_choices(parsed: Any) -> ChoiceReading:
    """The `ChoiceReading` of a parsed `chat.completion` (choices already known to exist)."""
    choices = parsed["choices"]
    first = choices[0] if isinstance(choices[0], dict) else {}
    return choice_reading(len(choices), [first.get("logprobs")])


def choice_reading(count: int, logprobs: list[Any]) -> ChoiceReading:
    """The `ChoiceReading` of `count` choices whose choice 0 carried the `logprobs` objects
    (one for a whole answer, one per chunk for a stream)."""
    counted = [c for c in (logprob_counts(item) for item in logprobs) if c is not None]
    if not counted:
        return ChoiceReading(count)
    tops = [top for _, top in counted if top is not None]
    return ChoiceReading(count, sum(t for t, _ in counted), min(tops) if tops else None)


def _text(message: dict[str, Any] | None) -> str:
    content = (message or {}).get("content")
    return content if isinstance(content, str) else ""


def sampling_anomalies(
    request: dict[str, Any], reading: ChoiceReading, message: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """What the answer leaves out of what its request asked: choices (`n`), log probabilities
    (`logprobs`, `top_logprobs`). A host that refuses says so with an error instead; one that
    leaves them out silently is noted here, for the checks."""
    anomalies: list[dict[str, Any]] = []
    asked = request.get("n")
    if isinstance(asked, int) and not isinstance(asked, bool) and reading.count < asked:
        anomalies.append({"kind": CHOICES_MISSING, "requested": asked, "received": reading.count})
    top = request.get("top_logprobs")
    top = top if isinstance(top, int) and not isinstance(top, bool) else 0
    # An answer with no text (a tool-call turn) has no tokens to carry log probabilities.
    if request.get("logprobs") is True and _text(message):
        missing = not reading.logprob_tokens or (top > 0 and (reading.top_logprobs or 0) < top)
        if missing:
            anomalies.append(
                {
                    "kind": LOGPROBS_MISSING,
                    "top_logprobs": top,
                    "tokens": reading.logprob_tokens,
                    "received_top": reading.top_logprobs,
                }
            )
    return anomalies

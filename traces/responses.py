"""Reading a chat-completions response that arrived whole: the headers worth keeping, the
assistant message, finish reason and usage of the body, and the upstream a router names.

Streams are read by `traces.sse`; failed and malformed responses become errors in
`traces.http_errors`.
"""

from __future__ import annotations

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

"""Phrases in an error body that name what the host refused, whatever status it came with.

The status is often wrong about the cause: llama.cpp and older vLLM answer 500 for a chat
template that raised or for a prompt over the context, so a "server error" can be a request
the host will refuse every time. The retry policy reads these to stop repeating such a
request; the HTTP checks read them to name the cause.
"""

from __future__ import annotations

TEMPLATE_MARKERS = (
    "chat template",
    "chat_template",
    "jinja",
    "template",
    "templatesyntaxerror",
    "undefinederror",
    "expected token",
)
"""A chat template that did not compile or raised while rendering the conversation."""

ARGUMENT_TYPE_MARKERS = (
    "must be a string",
    "must be an object",
    "must be a dict",
    "expected str",
    "expected dict",
    "not a valid dictionary",
    "is not mapping",
    "invalid tool call arguments",
    "failed to parse tool call arguments",
)
"""Tool-call arguments of a type the host (or its template) cannot take; the body also says
`argument` when this is what went wrong."""

CONTEXT_MARKERS = (
    "context length",
    "context_length",
    "context window",
    "context size",
    "exceed_context_size",
    "maximum context",
    "prompt is too long",
)
"""A prompt longer than the context window."""


def names_validation_error(text: str) -> bool:
    """Whether an error body (any case) says the request itself was refused: a template that
    raised, arguments of the wrong type, or a prompt over the context. Sending the same
    request again gets the same answer."""
    lowered = text.lower()
    return any(m in lowered for m in (*TEMPLATE_MARKERS, *CONTEXT_MARKERS)) or (
        "argument" in lowered and any(m in lowered for m in ARGUMENT_TYPE_MARKERS)
    )

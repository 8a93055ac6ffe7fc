"""Phrases in an error body that name what the host refused, whatever status it came with.

The status is often wrong about the cause: llama.cpp and older vLLM answer 500 for a chat
template that raised or for a prompt over the context, so a "server error" can be a request
the host will refuse every time. The retry policy reads these to stop repeating such a
request; the HTTP checks read them to name the cause.
"""

from __future__ import annotations

import re

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

TEMPLATE_PATTERN = re.compile(
    # Jinja's undefined attribute, as llama-cpp-python's 500 quotes it bare: "'dict object'
    # has no attribute 'name'" (Python's own AttributeError reads "'dict' object has...").
    r"'[a-z_]+ object' has no attribute"
    # Jinja's undefined variable: "'bos_token' is undefined".
    r"|'[a-z_][a-z0-9_]*' is undefined"
    # llama.cpp's template engine (minja) places every error: "... at row 49, column 79:".
    r"|\bat row \d+, column \d+"
)
"""Template errors whose text names no template: the engine's own phrasing (lower case)."""

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


def names_template_error(lowered: str) -> bool:
    """Whether an error text (lower case) says the chat template failed: by name, or in the
    phrasing of the template engine that raised."""
    return any(m in lowered for m in TEMPLATE_MARKERS) or bool(TEMPLATE_PATTERN.search(lowered))


def names_validation_error(text: str) -> bool:
    """Whether an error body (any case) says the request itself was refused: a template that
    raised, arguments of the wrong type, or a prompt over the context. Sending the same
    request again gets the same answer."""
    lowered = text.lower()
    return (
        names_template_error(lowered)
        or any(m in lowered for m in CONTEXT_MARKERS)
        or ("argument" in lowered and any(m in lowered for m in ARGUMENT_TYPE_MARKERS))
    )

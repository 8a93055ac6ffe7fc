"""Parse and validate a chat-completions request body, the way OpenAI rejects bad ones."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from traces.sim.sampling import ParameterError, Sampling, parse_sampling

# "function" is OpenAI's legacy tool-result role; still accepted there, so accepted here.
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class RequestError(Exception):
    """A request the simulator answers with HTTP 400 and an OpenAI error object."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        """`param` names the offending request field, as OpenAI does."""
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The fields of a chat-completions request the simulator uses."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    tool_choice: Any
    stream: bool
    include_usage: bool
    seed: int | None
    max_tokens: int | None = None
    """`max_completion_tokens` or `max_tokens`."""
    sampling: Sampling = field(default_factory=Sampling)
    """Every sampling parameter the request sets (`max_tokens` included)."""


def parse_chat_request(body: bytes) -> ChatRequest:
    """Decode and check `body`; raises `RequestError` naming the first problem."""
    try:
        data = json.loads(body)
    except ValueError:
        raise RequestError(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        ) from None
    if not isinstance(data, dict):
        raise RequestError("The request body must be a JSON object.")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(
            "you must provide a model parameter", "model", "missing_required_parameter"
        )
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(
            "'messages' must be a non-empty array of message objects.",
            "messages",
            "missing_required_parameter" if messages is None else "invalid_type",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestError(
                f"Invalid type for 'messages[{index}]': expected an object.",
                f"messages[{index}]",
                "invalid_type",
            )
        if message.get("role") not in _ROLES:
            raise RequestError(
                f"Invalid value for 'messages[{index}].role': {message.get('role')!r}. Supported "
                "values are: 'system', 'developer', 'user', 'assistant', 'tool' and 'function'.",
                f"messages[{index}].role",
                "invalid_value",
            )
    tools = data.get("tools")
    if tools is not None:
        _check_tools(tools)
    stream = data.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise RequestError(
            "Invalid type for 'stream': expected a boolean.", "stream", "invalid_type"
        )
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise RequestError("Invalid type for 'seed': expected an integer.", "seed", "invalid_type")
    try:
        sampling = parse_sampling(data)
    except ParameterError as problem:
        raise RequestError(problem.message, problem.param, problem.code) from None
    options = data.get("stream_options")
    include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
    return ChatRequest(
        model=model,
        messages=messages,
        tools=tools or None,
        tool_choice=data.get("tool_choice"),
        stream=bool(stream),
        include_usage=include_usage,
        seed=seed,
        max_tokens=sampling.max_tokens,
        sampling=sampling,
    )


def _check_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise RequestError("Invalid type for 'tools': expected an array.", "tools", "invalid_type")
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RequestError(
                f"Missing required parameter: 'tools[{index}].function.name'.",
                f"tools[{index}].function.name",
                "missing_required_parameter",
            )

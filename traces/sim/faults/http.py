"""Error answers real hosts send instead of a completion, with their own status and body.

Each body is the one a real host sent (quoted in `tests/fixtures/real_excerpts.json`), filled
in with this request's model, budget or arguments. They are decided by the request alone:
the same request meets the same refusal, as it would on the host that sends it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from traces.sim.faults.base import FaultContext, Rejection
from traces.sim.tokenizer import count_tokens
from traces.sim.wire import dumps

_VLLM_DEFAULT_MAX_TOKENS = 8192
"""The completion budget vLLM reserves when a request sets none (it is model-dependent)."""
_OPENROUTER_DEFAULT_MAX_TOKENS = 64000


def _vllm_error(message: str, kind: str, status: int) -> bytes:
    """vLLM's error body: flat, with `object: error` and the status as `code`."""
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    return dumps(body)


def unauthorized_401(ctx: FaultContext) -> Rejection:
    """OpenRouter's answer to a request without a usable key."""
    return Rejection(401, dumps({"error": {"message": "No auth credentials found", "code": 401}}))


def payment_required_402(ctx: FaultContext) -> Rejection:
    """OpenRouter's 402: the budget asked for costs more credits than the account holds."""
    asked = ctx.max_tokens or _OPENROUTER_DEFAULT_MAX_TOKENS
    affordable = max(1, int(asked * (0.02 + 0.3 * ctx.roll("payment_required_402.credits"))))
    message = (
        f"This request requires more credits, or fewer max_tokens. You requested up to "
        f"{asked} tokens, but can only afford {affordable}. To increase, visit "
        "https://openrouter.ai/settings/credits and upgrade to a paid account"
    )
    body = {"error": {"message": message, "code": 402, "metadata": {"provider_name": None}}}
    return Rejection(402, dumps(body))


def model_not_found_404(ctx: FaultContext) -> Rejection:
    """vLLM's 404 when the requested model is not the name it serves."""
    message = f"The model `{ctx.model}` does not exist."
    return Rejection(404, _vllm_error(message, "NotFoundError", 404))


def bad_request_400(ctx: FaultContext) -> Rejection | None:
    """Azure OpenAI's 400 on an API version that predates tool calling (requests with tools)."""
    if not ctx.tools:
        return None
    body = {
        "error": {
            "message": "Unrecognized request argument supplied: tools",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    return Rejection(400, dumps(body))


def _prompt_tokens(ctx: FaultContext) -> int:
    return count_tokens(json.dumps(list(ctx.messages), ensure_ascii=False))


def context_overflow_400(ctx: FaultContext) -> Rejection:
    """vLLM's 400 when the request does not fit the window, the client's fault. With a
    `max_tokens`, messages plus that budget overflow (the window is the largest power of two
    below their sum); without one vLLM budgets what the window leaves, so only a prompt over
    it overflows (the window is the largest power of two below the prompt)."""
    prompt = _prompt_tokens(ctx)
    if ctx.max_tokens is None:
        window = 1 << max(0, (prompt - 1).bit_length() - 1)
        message = (
            f"This model's maximum context length is {window} tokens. However, your request "
            f"has {prompt} input tokens. Please reduce the length of the input messages."
        )
        return Rejection(400, _vllm_error(message, "BadRequestError", 400))
    requested = prompt + ctx.max_tokens
    window = 1 << ((requested - 1).bit_length() - 1)
    message = (
        f"This model's maximum context length is {window} tokens. However, you requested "
        f"{requested} tokens ({prompt} in the messages, {ctx.max_tokens} in the completion). "
        "Please reduce the length of the messages or completion. None"
    )
    return Rejection(400, _vllm_error(message, "BadRequestError", 400))


HOST_CONTEXT_WINDOW = 8192
"""The window of the host that overflows it itself: far above any sample task's request."""


def host_context_overflow_400(ctx: FaultContext) -> Rejection | None:
    """llama-cpp-python's context 400 answering a request far smaller than the window: the
    server's own loop (its internal tool-call handling) grew the prompt past the window.
    The body counts the prompt the host built, not the one it was sent; the completion is
    the request's `max_tokens`, `None` when it set none, as llama-cpp-python prints it.
    Requests under a tenth of the window only."""
    prompt = _prompt_tokens(ctx)
    if prompt * 10 > HOST_CONTEXT_WINDOW:
        return None
    grown = HOST_CONTEXT_WINDOW + prompt
    message = (
        f"This model's maximum context length is {HOST_CONTEXT_WINDOW} tokens. However, you "
        f"requested {grown + (ctx.max_tokens or 0)} tokens ({grown} in the messages, "
        f"{ctx.max_tokens} in the completion). Please reduce the length of the messages or "
        "completion."
    )
    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    return Rejection(400, dumps(body))


def template_error_400(ctx: FaultContext) -> Rejection:
    """vLLM's 400 when the served chat template does not compile (every request fails)."""
    message = "expected token 'end of print statement', got 'name'"
    return Rejection(400, _vllm_error(message, "BadRequestError", 400))


def template_error_500(ctx: FaultContext) -> Rejection | None:
    """llama-cpp-python's 500 when the served Jinja template reads a field the request's
    messages lack: a functionary-style template reading `message['name']` of a tool result
    (requests whose history holds a tool message without `name`). The body quotes Jinja's
    exception bare, naming no template."""
    if not any(m.get("role") == "tool" and "name" not in m for m in ctx.messages):
        return None
    body = {
        "error": {
            "message": "'dict object' has no attribute 'name'",
            "type": "internal_server_error",
            "param": None,
            "code": None,
        }
    }
    return Rejection(500, dumps(body))


def _string_arguments(messages: Sequence[Mapping[str, Any]]) -> str | None:
    for message in messages:
        if message.get("role") != "assistant":
            continue
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            arguments = function.get("arguments") if isinstance(function, Mapping) else None
            if isinstance(arguments, str):
                return arguments
    return None


def argument_type_error_500(ctx: FaultContext) -> Rejection | None:
    """llama.cpp's 500 when GLM's template meets tool-call arguments in the history that are
    not a mapping (requests whose history holds arguments as a JSON string)."""
    arguments = _string_arguments(ctx.messages)
    if arguments is None:
        return None
    message = (
        f"Invalid tool call arguments passed: {arguments} at row 76, column 80:\n"
        "{% if _args is not mapping %}\n"
        '    {{ raise_exception("Invalid tool call arguments passed: " + _args | string) }}'
    )
    body = {"error": {"code": 500, "message": message, "type": "server_error"}}
    return Rejection(500, dumps(body))


def invalid_response_200(ctx: FaultContext) -> Rejection:
    """HTTP 200 whose JSON body is an error object, not a chat completion (RunPod's vLLM
    worker), even when a stream was asked for."""
    body = {
        "code": 404,
        "message": f"The model `{ctx.model}` does not exist.",
        "object": "error",
        "param": None,
        "type": "NotFoundError",
    }
    return Rejection(200, dumps(body))

"""The JSON shapes the simulator sends: completions, stream chunks, usage, models, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from traces.sim.config import ReasoningField
from traces.sim.policy import Decision
from traces.sim.template import render_assistant_body
from traces.sim.tokenizer import count_tokens

SYSTEM_FINGERPRINT = "fp_agent_traces_sim"


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as the wire carries it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def think_block(reasoning: str) -> str:
    """Reasoning as an inline block at the start of content (the "think" dialect)."""
    return f"<think>\n{reasoning}\n</think>\n\n"


def usage(decision: Decision, prompt_tokens: int) -> dict[str, Any]:
    """OpenAI usage object; completion tokens count the turn as the template renders it."""
    generated = render_assistant_body(
        decision.reasoning,
        decision.content,
        ((call.name, call.arguments) for call in decision.tool_calls),
    )
    completion = count_tokens(generated)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": count_tokens(decision.reasoning)},
    }


def _tool_calls(decision: Decision) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in decision.tool_calls
    ]


def message(decision: Decision, field: ReasoningField) -> dict[str, Any]:
    """`choices[0].message` with the reasoning where the dialect puts it."""
    body: dict[str, Any] = {"role": "assistant"}
    if field == "think":
        body["content"] = think_block(decision.reasoning) + decision.content
    else:
        # Like OpenAI, a pure tool-call turn has null content rather than "".
        body["content"] = decision.content or (None if decision.tool_calls else "")
        body[field] = decision.reasoning
    body["refusal"] = None
    if decision.tool_calls:
        body["tool_calls"] = _tool_calls(decision)
    return body


def completion(
    decision: Decision,
    *,
    completion_id: str,
    created: int,
    model: str,
    field: ReasoningField,
    usage_body: dict[str, Any],
) -> dict[str, Any]:
    """A non-streaming `chat.completion` object."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": message(decision, field),
                "logprobs": None,
                "finish_reason": decision.finish_reason,
            }
        ],
        "usage": usage_body,
    }


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def stream_events(
    decision: Decision,
    *,
    completion_id: str,
    created: int,
    model: str,
    field: ReasoningField,
    chunk_chars: int,
    usage_body: dict[str, Any] | None,
) -> Iterator[bytes]:
    """SSE events (`data: ...\\n\\n`) of a streamed completion, ending with `data: [DONE]`.

    Order: role chunk, reasoning deltas, content deltas, tool-call deltas (the first delta of
    each call carries id, type, name and empty arguments), the finish chunk, then the usage
    chunk with empty `choices` when `usage_body` is given (stream_options.include_usage).
    """
    head = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    with_usage = usage_body is not None

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk: dict[str, Any] = {**head, "choices": [choice]}
        if with_usage:
            chunk["usage"] = None  # OpenAI sends an explicit null until the usage chunk
        return b"data: " + dumps(chunk) + b"\n\n"

    yield event({"role": "assistant", "content": ""})
    if field == "think":
        text = think_block(decision.reasoning) + decision.content
        for piece in _pieces(text, chunk_chars):
            yield event({"content": piece})
    else:
        for piece in _pieces(decision.reasoning, chunk_chars):
            yield event({field: piece})
        for piece in _pieces(decision.content, chunk_chars):
            yield event({"content": piece})
    for index, call in enumerate(decision.tool_calls):
        opening = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield event({"tool_calls": [opening]})
        for piece in _pieces(call.arguments, chunk_chars):
            yield event({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield event({}, decision.finish_reason)
    if usage_body is not None:
        yield b"data: " + dumps({**head, "choices": [], "usage": usage_body}) + b"\n\n"
    yield b"data: [DONE]\n\n"


def models(model: str, created: int) -> dict[str, Any]:
    """The `/v1/models` list."""
    return {"object": "list", "data": [model_object(model, created)]}


def model_object(model: str, created: int) -> dict[str, Any]:
    """One entry of the models list."""
    return {"id": model, "object": "model", "created": created, "owned_by": "agent-traces-sim"}


def error(
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """OpenAI error body: `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}

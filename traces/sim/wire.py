"""The JSON shapes the simulator sends: completions, stream chunks, models, errors.

A `Reply` goes on the wire in its dialect's shape (see `placement`): reasoning in a message
field or inline in content, tool calls as OpenAI `tool_calls`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from traces.dialects import Dialect
from traces.sim.logprobs import logprob_entries
from traces.sim.placement import is_inline, reasoning_fields, response_content
from traces.sim.reply import Reply, ReplyCall
from traces.sim.tokenizer import token_pieces

SYSTEM_FINGERPRINT = "fp_agent_traces_sim"


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as the wire carries it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _call_body(call: ReplyCall) -> dict[str, Any]:
    body: dict[str, Any] = {} if call.id is None else {"id": call.id}
    body["type"] = "function"
    body["function"] = {"name": call.name, "arguments": call.arguments}
    return body


def message(reply: Reply, dialect: Dialect) -> dict[str, Any]:
    """`choices[0].message` with the reasoning where the dialect puts it."""
    content = response_content(dialect, reply.reasoning, reply.content)
    # Like OpenAI, a turn with tool calls and no text has null content rather than "".
    body: dict[str, Any] = {
        "role": "assistant",
        "content": content or (None if reply.calls else ""),
        **reasoning_fields(dialect, reply.reasoning),
        "refusal": None,
    }
    if reply.calls:
        body["tool_calls"] = [_call_body(call) for call in reply.calls]
    return body


def _logprobs(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"content": entries, "refusal": None}


def completion(
    reply: Reply,
    dialect: Dialect,
    *,
    completion_id: str,
    created: int,
    model: str,
    alternates: Sequence[Reply] = (),
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A non-streaming `chat.completion` object: `reply` as choice 0, then the `alternates`
    (more choices, for `n`), with `usage` covering them all (default: the reply's)."""
    choices = []
    for index, choice in enumerate((reply, *alternates)):
        body = message(choice, dialect)
        logprobs = None
        if choice.logprobs_top is not None:
            logprobs = _logprobs(logprob_entries(body["content"] or "", choice.logprobs_top))
        choices.append(
            {
                "index": index,
                "message": body,
                "logprobs": logprobs,
                "finish_reason": choice.finish_reason,
            }
        )
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": choices,
        "usage": reply.usage if usage is None else usage,
    }


@dataclass(slots=True)
class Chunk:
    """One streamed choice: its delta and, on the last one, the finish reason."""

    delta: dict[str, Any]
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None
    """The log probabilities of the tokens this delta carries, when the request asked."""
    index: int = 0
    """Which choice the delta belongs to (`n` above 1 streams several)."""


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _call_chunks(index: int, call: ReplyCall, size: int) -> Iterator[Chunk]:
    # The first delta of a call carries id, type, name and empty arguments, as OpenAI does.
    opening: dict[str, Any] = {"index": index, **_call_body(call)}
    opening["function"] = {"name": call.name, "arguments": ""}
    yield Chunk({"tool_calls": [opening]})
    if isinstance(call.arguments, str):
        for piece in _pieces(call.arguments, size):
            yield Chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    else:
        yield Chunk({"tool_calls": [{"index": index, "function": {"arguments": call.arguments}}]})


def stream_chunks(reply: Reply, dialect: Dialect, chunk_chars: int, choice: int = 0) -> list[Chunk]:
    """The deltas of a streamed reply (choice `choice`): role, reasoning, content, tool calls,
    finish.

    Reasoning streams in the dialect's delta field(s) or, for inline dialects, as part of the
    content deltas. With logprobs, content streams one token per delta, each with its own.
    """
    chunks = [Chunk({"role": "assistant", "content": ""})]
    if not is_inline(dialect):
        for piece in _pieces(reply.reasoning, chunk_chars):
            chunks.append(Chunk(reasoning_fields(dialect, piece)))
    content = response_content(dialect, reply.reasoning, reply.content)
    if reply.logprobs_top is None:
        for piece in _pieces(content, chunk_chars):
            chunks.append(Chunk({"content": piece}))
    else:
        entries = logprob_entries(content, reply.logprobs_top)
        for piece, entry in zip(token_pieces(content), entries, strict=True):
            chunks.append(Chunk({"content": piece}, logprobs=_logprobs([entry])))
    for index, call in enumerate(reply.calls):
        chunks.extend(_call_chunks(index, call, chunk_chars))
    chunks.append(Chunk({}, reply.finish_reason))
    for chunk in chunks:
        chunk.index = choice
    return chunks


def sse_events(
    chunks: Sequence[Chunk],
    *,
    completion_id: str,
    created: int,
    model: str,
    usage_body: dict[str, Any] | None,
) -> Iterator[bytes]:
    """SSE events (`data: ...\\n\\n`) for `chunks`, then the usage chunk with empty `choices`
    when `usage_body` is given (stream_options.include_usage), then `data: [DONE]`.
    """
    head = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    for chunk in chunks:
        choice = {
            "index": chunk.index,
            "delta": chunk.delta,
            "logprobs": chunk.logprobs,
            "finish_reason": chunk.finish_reason,
        }
        body: dict[str, Any] = {**head, "choices": [choice]}
        if usage_body is not None:
            body["usage"] = None  # OpenAI sends an explicit null until the usage chunk
        yield b"data: " + dumps(body) + b"\n\n"
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

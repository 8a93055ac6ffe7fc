"""Faults on the bytes as the host writes them: an event broken in two, a stream that stops
early, a connection dropped halfway.

Each hook gets the response as written (`Written`: one JSON body, or one SSE event per
piece) and returns it changed, or None when it does not apply (a stream fault on a JSON
answer). The events are the simulator's own `data: {...}\\n\\n` lines, ending in `[DONE]`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from traces.sim.faults.base import Written
from traces.sim.wire import dumps

_PREFIX = b"data: "
_TEXT = ("content", "reasoning_content", "reasoning")
_GLUED_ERROR = dumps(
    {
        "type": "error",
        "sequence_number": 0,
        "error": {"type": "upstream_error", "message": "stream_read_error"},
    }
)
"""The error object sub2api wrote into an unfinished event."""


def _chunk(event: bytes) -> dict[str, Any] | None:
    """The chunk an event carries; None for `[DONE]` (or anything that is not one, such as
    an event a fault before this one broke)."""
    if not event.startswith(_PREFIX + b"{"):
        return None
    try:
        chunk: dict[str, Any] = json.loads(event[len(_PREFIX) :])
    except ValueError:
        return None
    return chunk


def _event(chunk: dict[str, Any]) -> bytes:
    return _PREFIX + dumps(chunk) + b"\n\n"


def _delta(chunk: dict[str, Any] | None) -> dict[str, Any] | None:
    choices = chunk.get("choices") if chunk else None
    if not choices:
        return None
    delta: dict[str, Any] | None = choices[0].get("delta")
    return delta


def _finishes(chunk: dict[str, Any] | None) -> bool:
    choices = chunk.get("choices") if chunk else None
    return (
        isinstance(choices, list) and bool(choices) and choices[0].get("finish_reason") is not None
    )


def _text_field(delta: dict[str, Any] | None) -> str | None:
    """The text field a delta carries a non-empty piece of, if any."""
    for field in _TEXT:
        if delta and isinstance(delta.get(field), str) and delta[field]:
            return field
    return None


def stream_broken_chunk(written: Written) -> Written | None:
    """A gateway writes an upstream error into an unfinished event (sub2api): the first event
    with text stops right after its delta and the error object follows on the next line, so
    its `data:` line is not JSON and the piece of text is lost. Streams with text only."""
    if not written.streamed:
        return None
    pieces = list(written.pieces)
    for position, event in enumerate(pieces):
        if _text_field(_delta(_chunk(event))) is None:
            continue
        data = event.rstrip(b"\n")
        cut = data.rfind(b',"logprobs"')
        head = data[:cut] if cut > 0 else data[: len(data) // 2]
        pieces[position] = head + b"\n" + _GLUED_ERROR + b"\n\n"
        return replace(written, pieces=tuple(pieces))
    return None


def _halve(delta: dict[str, Any] | None) -> bool:
    """Cut the piece of arguments or text `delta` carries in half; False if it has none."""
    for entry in reversed((delta or {}).get("tool_calls") or ()):
        function = entry.get("function") or {}
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            function["arguments"] = arguments[: len(arguments) // 2]
            return True
    field = _text_field(delta)
    if delta is None or field is None:
        return False
    delta[field] = delta[field][: len(delta[field]) // 2]
    return True


def stream_truncated(written: Written) -> Written | None:
    """The stream stops early, though HTTP ends it cleanly: the last piece of text or
    arguments is cut in half (mid-call on a tool turn) and no finish_reason, usage or
    `[DONE]` follows (a host that lost its upstream). Streams only."""
    if not written.streamed:
        return None
    chunks = [_chunk(event) for event in written.pieces]
    end = next((i for i, chunk in enumerate(chunks) if _finishes(chunk)), 0)
    if end == 0:
        return None
    pieces = list(written.pieces[:end])
    last = chunks[end - 1]
    if last is not None and _halve(_delta(last)):
        pieces[-1] = _event(last)
    return Written(tuple(pieces), streamed=True)


_DONE = _PREFIX + b"[DONE]\n\n"


def empty_response(written: Written) -> Written:
    """The host answers 200 but fails before generating anything (an upstream that errored
    after the headers went out, a server whose own loop failed): a stream of nothing but
    `data: [DONE]`, or a completion whose `choices` is empty and whose usage counts no
    completion token. Any completion."""
    if written.streamed:
        return Written((_DONE,), streamed=True)
    body = json.loads(b"".join(written.pieces))
    body["choices"] = []
    usage = body.get("usage")
    if isinstance(usage, dict):
        prompt = usage.get("prompt_tokens", 0)
        body["usage"] = {"prompt_tokens": prompt, "completion_tokens": 0, "total_tokens": prompt}
    return Written((dumps(body),), streamed=False)


def connection_reset(written: Written) -> Written:
    """The connection drops halfway through the response (an upstream that crashed, a proxy
    that gave up): half the events, or half the JSON body, then nothing."""
    if written.streamed:
        pieces = written.pieces[: max(1, len(written.pieces) // 2)]
    else:
        body = b"".join(written.pieces)
        pieces = (body[: len(body) // 2],)
    return Written(pieces, written.streamed, complete=False)


def endless_response(written: Written) -> Written:
    """The response never ends. A stream sends the reply up to its finish, then repeats its
    last piece of text every `TRICKLE_S` (a model stuck in a loop behind a host with no
    length limit); a JSON body never starts, the host writing a keep-alive space every
    `TRICKLE_S` instead (OpenRouter pads a slow non-streamed answer so). Any completion."""
    if not written.streamed:
        return Written((), streamed=False, complete=False, trickle=b" ")
    chunks = [_chunk(event) for event in written.pieces]
    end = next((i for i, chunk in enumerate(chunks) if _finishes(chunk)), len(chunks))
    trickle = b": keep-alive\n\n"
    for chunk in reversed(chunks[:end]):
        delta = _delta(chunk)
        field = _text_field(delta)
        if chunk is not None and delta is not None and field is not None:
            again = json.loads(json.dumps(chunk))
            again["choices"][0]["delta"] = {field: delta[field]}
            trickle = _event(again)
            break
    return Written(written.pieces[:end], streamed=True, complete=False, trickle=trickle)


_SPOT = "\x00sim-spot\x00"
"""A string no reply contains: where a fault writes bytes no JSON encoder would."""


def _spoil(written: Written, bad_json: bytes) -> Written | None:
    """`written` with `usage` replaced by `bad_json` (text that is not strict JSON): in the
    body, or in the stream's usage chunk (else its last chunk). None when a fault before
    this one left no JSON to spoil (a body never sent, every event broken)."""
    spot = dumps(_SPOT)
    if not written.streamed:
        try:
            body = json.loads(b"".join(written.pieces))
        except ValueError:
            return None
        body["usage"] = _SPOT
        return replace(written, pieces=(dumps(body).replace(spot, bad_json),))
    pieces = list(written.pieces)
    chunks = [_chunk(event) for event in pieces]
    at = next((i for i, c in reversed(list(enumerate(chunks))) if c and c.get("usage")), None)
    if at is None:
        at = next((i for i, c in reversed(list(enumerate(chunks))) if c is not None), None)
    if at is None:
        return None
    chunk = chunks[at]
    assert chunk is not None
    chunk["usage"] = _SPOT
    pieces[at] = _event(chunk).replace(spot, bad_json)
    return replace(written, pieces=tuple(pieces))


_NOT_NUMBERS = b'{"prompt_tokens":NaN,"completion_tokens":1e999,"total_tokens":-Infinity}'
NESTING = 100_000
"""How deep `deeply_nested_json` nests its arrays."""


def non_json_numbers(written: Written) -> Written | None:
    """Usage written with numbers JSON cannot hold (`NaN`, `1e999`, `-Infinity`), as a
    server serialising floats with a lenient encoder does: the body, or the stream's usage
    chunk, is no longer JSON a strict parser takes. Any completion."""
    return _spoil(written, _NOT_NUMBERS)


def deeply_nested_json(written: Written) -> Written | None:
    """Usage nested `NESTING` arrays deep (a serialiser with no depth limit echoing a
    pathological value): no parser with a recursion limit reads the body, or the stream's
    usage chunk. Any completion."""
    return _spoil(written, b"[" * NESTING + b"]" * NESTING)


def usage_omitted(written: Written) -> Written | None:
    """The host sends no usage although it was asked for (a gateway that drops it, a server
    that does not count): the body without `usage`, the stream without its usage chunk (the
    other chunks keep the explicit `null` OpenAI sends before it). Responses with usage."""
    if not written.streamed:
        body = json.loads(b"".join(written.pieces))
        if body.pop("usage", None) is None:
            return None
        return replace(written, pieces=(dumps(body),))
    chunks = [_chunk(event) for event in written.pieces]
    kept = tuple(
        event
        for event, chunk in zip(written.pieces, chunks, strict=True)
        if not (chunk is not None and chunk.get("usage") and not chunk.get("choices"))
    )
    return replace(written, pieces=kept) if len(kept) < len(written.pieces) else None


def stream_usage_every_chunk(written: Written) -> Written | None:
    """Every chunk carries usage with the running counts, as vLLM does when asked for
    `continuous_usage_stats`, here unasked (llama-server's always-usage change): a client
    adding up usage chunks counts the tokens many times over. The final usage chunk stays.
    Streams with a usage chunk (include_usage)."""
    if not written.streamed:
        return None
    chunks = [_chunk(event) for event in written.pieces]
    final = next((i for i, c in reversed(list(enumerate(chunks))) if c and c.get("usage")), None)
    if final is None:
        return None
    last = chunks[final]
    assert last is not None
    usage = last["usage"]
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    earlier = [i for i in range(final) if chunks[i] is not None]
    pieces = list(written.pieces)
    for n, position in enumerate(earlier, start=1):
        chunk = chunks[position]
        assert chunk is not None
        done = completion * n // len(earlier)
        chunk["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": done,
            "total_tokens": prompt + done,
        }
        pieces[position] = _event(chunk)
    return replace(written, pieces=tuple(pieces))

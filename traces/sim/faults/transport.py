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
    """The chunk an event carries; None for `[DONE]` (or anything that is not one)."""
    if not event.startswith(_PREFIX + b"{"):
        return None
    chunk: dict[str, Any] = json.loads(event[len(_PREFIX) :])
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


def connection_reset(written: Written) -> Written:
    """The connection drops halfway through the response (an upstream that crashed, a proxy
    that gave up): half the events, or half the JSON body, then nothing."""
    if written.streamed:
        pieces = written.pieces[: max(1, len(written.pieces) // 2)]
    else:
        body = b"".join(written.pieces)
        pieces = (body[: len(body) // 2],)
    return Written(pieces, written.streamed, complete=False)

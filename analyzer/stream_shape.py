"""The chunk-size distribution of a stored stream, for `traces show`.

`steps.stream_events` keeps every raw SSE line with its arrival time. Replaying their chunks
through the recorder's own assembler measures the stream exactly as it was measured when
recorded, so steps recorded or imported before the distribution existed show it too. The
assembler, not the whole `traces.sse.StreamReader`: that one builds pydantic exchanges, which
`traces show` must not import to start fast (tests/test_cli_startup.py).
"""

from __future__ import annotations

import json
from typing import Any

from traces import strict_json
from traces.stream import StreamAssembler


def stored_events(stored: str) -> list[tuple[Any, str]] | None:
    """A step's stored stream (`steps.stream_events`) as (arrival time, raw SSE line) pairs,
    malformed entries left out; None when the column is not a readable list."""
    try:
        events = json.loads(stored)
    except ValueError:
        return None
    if not isinstance(events, list):
        return None
    return [
        (event[0], event[1])
        for event in events
        if isinstance(event, list) and len(event) == 2 and isinstance(event[1], str)
    ]


def stream_shape(stored: str | None) -> dict[str, Any] | None:
    """The distribution of one step's stream (`DeliveryLog.shape`); None when the step was
    not streamed or its lines are not readable."""
    events = None if stored is None else stored_events(stored)
    if events is None:
        return None
    assembler = StreamAssembler()
    timed = True
    for t_ms, line in events:
        if not isinstance(t_ms, int | float):
            # An imported log keeps the lines, not when each came.
            timed, t_ms = False, 0.0
        chunk = sse_chunk(line)
        if chunk is not None:
            assembler.feed(chunk, float(t_ms))
    return assembler.delivery.shape(timed=timed)


def sse_chunk(line: str) -> dict[str, Any] | None:
    """The chunk a raw SSE line carries, as the recorder reads it; None for `[DONE]`, other
    fields, an unreadable payload, or an error event (none of which is a delta)."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return None
    try:
        chunk = strict_json.loads(payload)
    except ValueError:
        return None
    if not isinstance(chunk, dict) or ("error" in chunk and not chunk.get("choices")):
        return None
    return chunk


def describe_shape(shape: dict[str, Any]) -> str:
    """One plain line: `42 chunks · content 30 deltas, median 4 p90 6 max 9 chars · …`."""
    parts = [f"{shape['chunks']} chunks"]
    for field in ("reasoning", "content", "arguments"):
        stats = shape.get(field)
        if stats:
            deltas = f"{stats['deltas']} delta{'' if stats['deltas'] == 1 else 's'}"
            parts.append(
                f"{field} {deltas}, median {stats['median']:g} "
                f"p90 {stats['p90']:g} max {stats['max']} chars"
            )
    gaps = shape.get("gap_ms")
    if not shape.get("timed"):
        parts.append("arrival times unknown")
    elif shape.get("first_text_ms") is not None:
        parts.append(f"first text at {shape['first_text_ms']:g} ms")
        if gaps:
            parts.append(
                f"gaps median {gaps['median']:g} p90 {gaps['p90']:g} max {gaps['max']:g} ms"
            )
    return " · ".join(parts)

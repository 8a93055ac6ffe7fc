"""Streaming quirks of tool-call deltas, as seen from real servers and proxies.

Each hook gets the chunks of one streamed reply (it owns them and may edit them in place)
and returns them, or None when the stream has no tool-call deltas to disturb: these faults
apply to streamed tool turns only. Hooks that need `index` to tell calls apart run before
the ones that change or remove it (the catalogue orders them so).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from traces.sim.wire import Chunk


def _entries(chunks: list[Chunk]) -> Iterator[dict[str, Any]]:
    for chunk in chunks:
        yield from chunk.delta.get("tool_calls") or ()


def _has_calls(chunks: list[Chunk]) -> bool:
    return any(True for _ in _entries(chunks))


def stream_index_missing(chunks: list[Chunk]) -> list[Chunk] | None:
    """Tool-call deltas carry no `index` (Gemini's compatibility endpoint, some proxies)."""
    if not _has_calls(chunks):
        return None
    for entry in _entries(chunks):
        entry.pop("index", None)
    return chunks


def stream_fields_repeated(chunks: list[Chunk]) -> list[Chunk] | None:
    """Every delta of a call repeats its id, type and name (a naive client concatenates
    them into `read_fileread_file`).
    """
    if not _has_calls(chunks):
        return None
    opening: dict[Any, dict[str, Any]] = {}
    for entry in _entries(chunks):
        first = opening.setdefault(entry.get("index"), entry)
        if first is entry:
            continue
        for field in ("id", "type"):
            if field in first:
                entry[field] = first[field]
        entry["function"] = {"name": first["function"]["name"], **entry.get("function", {})}
    return chunks


def stream_arguments_cumulative(chunks: list[Chunk]) -> list[Chunk] | None:
    """Each argument delta holds everything so far instead of the new piece."""
    if not _has_calls(chunks):
        return None
    sofar: dict[Any, str] = {}
    for entry in _entries(chunks):
        function = entry.get("function") or {}
        piece = function.get("arguments")
        if isinstance(piece, str) and piece:
            sofar[entry.get("index")] = sofar.get(entry.get("index"), "") + piece
            function["arguments"] = sofar[entry.get("index")]
    return chunks


def _opens_call(entry: dict[str, Any]) -> bool:
    # An opening delta is the only one whose arguments are the empty string.
    return (entry.get("function") or {}).get("arguments") == ""


def stream_index_split(chunks: list[Chunk]) -> list[Chunk] | None:
    """A call's opening delta and its first argument piece arrive as two entries with the
    same index in one chunk.
    """
    merged: list[Chunk] = []
    changed = False
    for chunk in chunks:
        entries = chunk.delta.get("tool_calls")
        previous = merged[-1].delta.get("tool_calls") if merged else None
        if (
            entries
            and previous
            and len(previous) == 1
            and _opens_call(previous[0])
            and previous[0].get("index") == entries[0].get("index")
        ):
            previous.extend(entries)
            changed = True
            continue
        merged.append(chunk)
    return merged if changed else None


def stream_index_from_one(chunks: list[Chunk]) -> list[Chunk] | None:
    """Tool-call indices start at 1 instead of 0."""
    if not _has_calls(chunks):
        return None
    for entry in _entries(chunks):
        if isinstance(entry.get("index"), int):
            entry["index"] += 1
    return chunks

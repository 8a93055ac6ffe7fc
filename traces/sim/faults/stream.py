"""Streaming quirks of tool-call deltas and finish reasons, as seen from real servers and
proxies.

Each hook gets the chunks of one streamed reply (it owns them and may edit them in place)
and returns them, or None when the stream has nothing for it to disturb: most apply to
streamed tool turns only. Hooks that need `index` to tell calls apart run before the ones
that change or remove it (the catalogue orders them so).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from traces.sim.ids import openai_id
from traces.sim.wire import Chunk
from traces.stream_quality import ONE_DELTA_MIN_CHARS


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


def _continuations(chunks: list[Chunk]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(opening entry, later entry) for every delta that continues a call already opened."""
    opening: dict[Any, dict[str, Any]] = {}
    for entry in _entries(chunks):
        first = opening.setdefault(entry.get("index"), entry)
        if first is not entry:
            yield first, entry


def stream_id_changed(chunks: list[Chunk]) -> list[Chunk] | None:
    """A call's id changes after its opening delta: every later delta carries another one
    (poolside; LM Studio sends a new id with each argument piece)."""
    changed = False
    for first, entry in _continuations(chunks):
        if isinstance(first.get("id"), str):
            entry["id"] = openai_id(first["id"])
            changed = True
    return chunks if changed else None


def stream_id_repeated(chunks: list[Chunk]) -> list[Chunk] | None:
    """Every delta of a call repeats its id and type, not its name (a vLLM backend behind a
    proxy: naive clients build `functionfunction…`)."""
    changed = False
    for first, entry in _continuations(chunks):
        for field in ("id", "type"):
            if field in first:
                entry[field] = first[field]
                changed = True
    return chunks if changed else None


def stream_arguments_cumulative(chunks: list[Chunk]) -> list[Chunk] | None:
    """Each argument delta holds everything so far instead of the new piece. Arguments that
    arrive in one piece read the same either way: without a split call nothing changes."""
    sofar: dict[Any, str] = {}
    changed = False
    for entry in _entries(chunks):
        function = entry.get("function") or {}
        piece = function.get("arguments")
        if isinstance(piece, str) and piece:
            before = sofar.get(entry.get("index"), "")
            changed = changed or bool(before)
            sofar[entry.get("index")] = before + piece
            function["arguments"] = sofar[entry.get("index")]
    return chunks if changed else None


def _opens_call(entry: dict[str, Any]) -> bool:
    # An opening delta is the only one whose arguments are the empty string.
    return (entry.get("function") or {}).get("arguments") == ""


def stream_arguments_object(chunks: list[Chunk]) -> list[Chunk] | None:
    """Each call arrives whole in its opening delta, its arguments a JSON object instead of
    string fragments (Z.ai's GLM-4.5 stream, Ollama behind LiteLLM)."""
    openings: dict[Any, dict[str, Any]] = {}
    arguments: dict[Any, list[Any]] = {}
    kept_chunks: list[Chunk] = []
    for chunk in chunks:
        entries = chunk.delta.get("tool_calls")
        if not entries:
            kept_chunks.append(chunk)
            continue
        kept = []
        for entry in entries:
            key = entry.get("index")
            if _opens_call(entry) and key not in openings:
                openings[key], arguments[key] = entry, []
                kept.append(entry)
            elif key in openings:
                arguments[key].append((entry.get("function") or {}).get("arguments"))
            else:
                kept.append(entry)
        if kept:
            chunk.delta["tool_calls"] = kept
        else:
            del chunk.delta["tool_calls"]
        if chunk.delta or chunk.finish_reason is not None:
            kept_chunks.append(chunk)
    changed = False
    for key, entry in openings.items():
        pieces = arguments[key]
        whole = pieces[0] if len(pieces) == 1 and isinstance(pieces[0], dict) else None
        if whole is None and all(isinstance(piece, str) for piece in pieces):
            try:
                whole = json.loads("".join(pieces))
            except ValueError:
                whole = None
        if isinstance(whole, dict):
            entry["function"]["arguments"] = whole
            changed = True
    return kept_chunks if changed else None


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


def stream_index_collision(chunks: list[Chunk]) -> list[Chunk] | None:
    """Parallel calls all stream under index 0 (Dynamo, Ollama): a client keyed on the index
    merges them into one call with `{..}{..}` arguments. Turns with two or more calls only."""
    if len({entry.get("index") for entry in _entries(chunks)}) < 2:
        return None
    for entry in _entries(chunks):
        entry["index"] = 0
    return chunks


def stream_finish_twice(chunks: list[Chunk]) -> list[Chunk] | None:
    """After the finish chunk, one more says `stop` (Dynamo): clients that keep the last
    finish_reason end a tool turn as an answer. Streams not finished by `stop` only."""
    finish = next((c.finish_reason for c in reversed(chunks) if c.finish_reason), None)
    if finish is None or finish == "stop":
        return None
    chunks.append(Chunk({"content": None}, "stop"))
    return chunks


# -- delivery quality, as MiniMax's provider verifier tests it ------------------------------

_TEXT_KEYS = ("content", "reasoning_content", "reasoning")
_REASONING_KEYS = ("reasoning_content", "reasoning", "reasoning_details")


def _reasoning_delta(delta: dict[str, Any]) -> bool:
    return any(delta.get(key) for key in _REASONING_KEYS)


def stream_content_with_reasoning(chunks: list[Chunk]) -> list[Chunk] | None:
    """The first piece of content rides in the last reasoning delta, as vLLM's DeepSeek-style
    parsers send a delta holding `</think>`: one delta with both fields. Streamed turns with
    reasoning in a field and content."""
    last_reasoning = next(
        (i for i in range(len(chunks) - 1, -1, -1) if _reasoning_delta(chunks[i].delta)), None
    )
    if last_reasoning is None:
        return None
    following = range(last_reasoning + 1, len(chunks))
    first_content = next((i for i in following if chunks[i].delta.get("content")), None)
    if first_content is None:
        return None
    chunks[last_reasoning].delta["content"] = chunks[first_content].delta.pop("content")
    if not chunks[first_content].delta and chunks[first_content].finish_reason is None:
        del chunks[first_content]
    return chunks


_CUT_CHARACTER = "\u2014"
"""The em dash the fault's model writes when its text has no multi-byte character to cut."""


def _halves(text: str) -> tuple[str, str]:
    """`text` cut inside its first multi-byte character (or an em dash put after its first
    word), each side decoded alone as a detokenizer that emits every token at once does."""
    at = next((i for i, c in enumerate(text) if ord(c) > 0x7F), None)
    if at is None:
        space = text.find(" ")
        at = space if space > 0 else len(text)
        text = text[:at] + _CUT_CHARACTER + text[at:]
    encoded = text[at].encode()
    head = encoded[:1].decode(errors="replace")
    tail = encoded[1:].decode(errors="replace")
    return text[:at] + head, tail + text[at + 1 :]


def _texts(chunk: Chunk) -> dict[str, str]:
    """The text fields of a delta the split can cut (not one carrying reasoning_details)."""
    if "reasoning_details" in chunk.delta:
        return {}
    return {k: v for k, v in chunk.delta.items() if k in _TEXT_KEYS and isinstance(v, str) and v}


def stream_split_utf8(chunks: list[Chunk]) -> list[Chunk] | None:
    """The host decodes each byte-level token alone (vllm-mlx before its fix): a multi-byte
    character arrives as U+FFFD ending one chunk and U+FFFD starting the next. The cut is in
    the text's first multi-byte character (a typographic quote, an ellipsis) or, where the
    simulated model wrote ASCII only, in an em dash it writes after its first word. Streams
    with text outside `reasoning_details`."""
    texts = [(position, _texts(chunk)) for position, chunk in enumerate(chunks)]
    texts = [(position, found) for position, found in texts if found]
    wide = [item for item in texts if any(not v.isascii() for v in item[1].values())]
    if not texts:
        return None
    position, found = (wide or texts)[0]
    # Copies of one piece (vLLM's `reasoning` beside `reasoning_content`) are cut alike.
    cut = {key: _halves(text) for key, text in found.items()}
    chunks[position].delta.update({key: halves[0] for key, halves in cut.items()})
    chunks.insert(position + 1, Chunk({key: halves[1] for key, halves in cut.items()}))
    return chunks


def stream_single_chunk(chunks: list[Chunk]) -> list[Chunk] | None:
    """The host buffers the generation and sends it whole: all the reasoning in one delta,
    then all the content in one (CLIProxyAPI with thinking models). Only where that is
    visible: streams with `ONE_DELTA_MIN_CHARS` or more of reasoning or content, since a short
    answer can honestly fit in one chunk."""
    merged: list[Chunk] = []
    longest = 0
    # Merged into copies: a stream too short to show the fault must go out as it came.
    for chunk in (replace(c, delta=dict(c.delta)) for c in chunks):
        previous = merged[-1].delta if merged else None
        keys = [k for k in (*_TEXT_KEYS, "reasoning_details") if chunk.delta.get(k)]
        same_kind = (
            previous is not None
            and keys
            and set(keys) == {k for k in previous if previous.get(k) and k != "role"}
            and chunk.finish_reason is None
        )
        if not same_kind:
            merged.append(chunk)
            continue
        assert previous is not None
        for key in keys:
            if key == "reasoning_details":
                joined = previous[key][0]["text"] + chunk.delta[key][0]["text"]
                previous[key] = [{**previous[key][0], "text": joined}]
                longest = max(longest, len(joined))
            else:
                previous[key] += chunk.delta[key]
                longest = max(longest, len(previous[key]))
    return merged if longest >= ONE_DELTA_MIN_CHARS else None

"""How a stream was delivered: what each chunk carried, when it came, and the irregularities
a provider verifier looks for in the delivery itself rather than in the message.

MiniMax's provider verifier tests a host's stream for usage in any chunk but the last,
content and reasoning in one delta, U+FFFD in the text (a detokenizer that split a
multi-byte character between two chunks) and the distribution of chunk sizes. A
`DeliveryLog` measures all of it while the chunks are assembled, so recording, importing and
`traces show` (replaying the stored lines) read a stream one way.

Sizes are characters, not tokens: a chunk does not say how many tokens it holds, and a
token of English text is about four characters.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

REPLACEMENT = "\ufffd"
"""What a decoder writes for bytes that are not UTF-8: half of a character, decoded alone."""

_ESCAPED = ("\\ufffd", "\\uFFFD")
"""U+FFFD as tool-call arguments (JSON text) carry it when the host escapes non-ASCII."""

ONE_DELTA_MIN_CHARS = 120
"""A delta this long (about 30 tokens) holding nearly all of a text is a buffered answer:
real token streams send one to a few tokens per chunk (MiniMax's verifier already counts a
fragment over 200 characters as buffered). Shorter answers may honestly fit in one chunk."""

ONE_DELTA_SHARE = 0.9
"""The share of a text's characters that one delta must hold to count as the whole of it."""

TINY_MAX_CHARS = 4
LARGE_MIN_CHARS = 201
"""MiniMax's packet-size buckets: tiny (1-4 characters, a character-by-character stream),
normal (5-200), large (over 200, a buffered fragment)."""

_PREVIEW = 80


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list (as MiniMax's verifier takes it)."""
    return ordered[round((len(ordered) - 1) * q)]


def size_stats(sizes: list[int]) -> dict[str, Any] | None:
    """Deltas, characters, median, p90 and max of a list of delta sizes; None when empty."""
    if not sizes:
        return None
    ordered = sorted(sizes)
    return {
        "deltas": len(sizes),
        "chars": sum(sizes),
        "median": _percentile([float(s) for s in ordered], 0.5),
        "p90": _percentile([float(s) for s in ordered], 0.9),
        "max": ordered[-1],
    }


def gap_stats(times: list[float]) -> dict[str, float] | None:
    """Median, p90 and max milliseconds between consecutive arrivals; None with fewer than
    two arrivals."""
    if len(times) < 2:
        return None
    gaps = sorted(b - a for a, b in pairwise(times))
    return {
        "median": round(_percentile(gaps, 0.5), 2),
        "p90": round(_percentile(gaps, 0.9), 2),
        "max": round(gaps[-1], 2),
    }


def _has_replacement(piece: str, escaped: bool) -> bool:
    return REPLACEMENT in piece or (escaped and any(form in piece for form in _ESCAPED))


def _starts(piece: str, escaped: bool) -> bool:
    return piece.startswith(REPLACEMENT) or (escaped and piece.startswith(_ESCAPED))


def _ends(piece: str, escaped: bool) -> bool:
    return piece.endswith(REPLACEMENT) or (escaped and piece.endswith(_ESCAPED))


def _around(piece: str) -> str:
    at = piece.find(REPLACEMENT)
    if at < 0:
        at = max(piece.find(form) for form in _ESCAPED)
    start = max(0, at - _PREVIEW // 2)
    return piece[start : start + _PREVIEW]


class DeliveryLog:
    """Measures one stream's delivery chunk by chunk and notes what is irregular in it.

    Anomalies go to the list it is given (the assembler's), one per kind and stream with a
    count, so a 2,000-chunk stream with usage in every chunk records one anomaly, not 2,000.
    """

    def __init__(self, anomalies: list[dict[str, Any]]) -> None:
        """Start before the first chunk; irregularities are appended to `anomalies`."""
        self.anomalies = anomalies
        self.chunks = 0
        self.sizes: dict[str, list[int]] = {"content": [], "reasoning": [], "arguments": []}
        self.text_times: list[float] = []
        """Arrival of each chunk that carried text or arguments, in ms after the request."""
        self._usage_count = 0
        self._usage_first: int | None = None
        self._usage_last: int | None = None
        self._mixed: dict[str, Any] | None = None
        self._replaced: dict[str, Any] | None = None
        self._last_piece: dict[str, str] = {}

    def chunk(self, has_usage: bool) -> int:
        """Count one parsed chunk (with a usage object or not); its position in the stream."""
        position = self.chunks
        self.chunks += 1
        if has_usage:
            self._usage_count += 1
            if self._usage_first is None:
                self._usage_first = position
            self._usage_last = position
        return position

    def delta(
        self, content: str, reasoning: str, arguments: list[str], t_ms: float, position: int
    ) -> None:
        """One delta's non-empty text: its content, its reasoning (from whichever field or
        detail carried it) and the argument pieces of its tool calls."""
        if content:
            self.sizes["content"].append(len(content))
            self._check_replacement("content", content, position)
        if reasoning:
            self.sizes["reasoning"].append(len(reasoning))
            self._check_replacement("reasoning", reasoning, position)
        for piece in arguments:
            self.sizes["arguments"].append(len(piece))
            self._check_replacement("arguments", piece, position)
        if content and reasoning:
            self._note_mixed(content, reasoning, position)
        if content or reasoning or arguments:
            self.text_times.append(t_ms)

    def _note_mixed(self, content: str, reasoning: str, position: int) -> None:
        # vLLM's DeepSeek-style parsers split a delta holding `</think>` into both fields;
        # clients that switch from thinking to answering on the first content drop one.
        if self._mixed is not None:
            self._mixed["deltas"] += 1
            return
        self.anomalies.append(
            {
                "kind": "content_and_reasoning_in_one_delta",
                "chunk": position,
                "content": content[:_PREVIEW],
                "reasoning": reasoning[:_PREVIEW],
                "same_text": content == reasoning,
                "deltas": 1,
            }
        )
        self._mixed = self.anomalies[-1]

    def _check_replacement(self, field: str, piece: str, position: int) -> None:
        escaped = field == "arguments"
        before = self._last_piece.get(field, "")
        self._last_piece[field] = piece
        if not _has_replacement(piece, escaped):
            return
        edge = _starts(piece, escaped) or _ends(piece, escaped)
        # A split character leaves U+FFFD at the end of one piece and the start of the next.
        split = _ends(before, escaped) and _starts(piece, escaped)
        noted = self._replaced
        if noted is not None:
            noted["pieces"] += 1
            noted["at_edge"] = noted["at_edge"] or edge
            if split and not noted["split"]:
                noted["split"] = True
                noted["field"] = field
                noted["chunk"] = position
                # The two pieces on either side of the cut are the evidence to read.
                noted["excerpt"] = [before[-_PREVIEW // 2 :], piece[: _PREVIEW // 2]]
            if field not in noted["fields"]:
                noted["fields"].append(field)
            return
        self.anomalies.append(
            {
                "kind": "replacement_char",
                "field": field,
                "fields": [field],
                "chunk": position,
                "excerpt": _around(piece),
                "at_edge": edge,
                "split": split,
                "pieces": 1,
            }
        )
        self._replaced = self.anomalies[-1]

    def closing_anomalies(self) -> list[dict[str, Any]]:
        """What only the whole, finished stream shows: usage in a chunk before the last, a
        text in one delta. Computed afresh on each call (the stream may be read
        again after more chunks)."""
        anomalies: list[dict[str, Any]] = []
        last = self.chunks - 1
        if self._usage_count and (self._usage_count > 1 or self._usage_last != last):
            anomalies.append(
                {
                    "kind": "usage_before_last_chunk",
                    "chunks_with_usage": self._usage_count,
                    "first_at": self._usage_first,
                    "chunks": self.chunks,
                    "in_every_chunk": self._usage_count == self.chunks,
                }
            )
        buffered = self._one_delta()
        if buffered is not None:
            anomalies.append({"kind": "single_chunk", **buffered})
        return anomalies

    def _one_delta(self) -> dict[str, Any] | None:
        # Arguments are left out: tool parsers often hold a call back until it parses.
        for field in ("content", "reasoning"):
            sizes = self.sizes[field]
            if not sizes:
                continue
            largest, total = max(sizes), sum(sizes)
            if largest >= ONE_DELTA_MIN_CHARS and largest >= ONE_DELTA_SHARE * total:
                return {
                    "form": "one_delta",
                    "field": field,
                    "chars": largest,
                    "of_chars": total,
                    "deltas": len(sizes),
                    "chunks": self.chunks,
                }
        return None

    def shape(self, *, timed: bool = True) -> dict[str, Any]:
        """The stream's chunk-size distribution: chunks, then per content, reasoning and
        arguments the deltas and their median, p90 and max characters, MiniMax's packet
        buckets over all of them, when the first text came and the gaps between text chunks
        (None when the arrival times are unknown: a log keeps the lines, not their times).
        A stream a proxy held back shows as a late first text and gaps of 0 ms."""
        every = [size for sizes in self.sizes.values() for size in sizes]
        return {
            "chunks": self.chunks,
            "timed": timed,
            "content": size_stats(self.sizes["content"]),
            "reasoning": size_stats(self.sizes["reasoning"]),
            "arguments": size_stats(self.sizes["arguments"]),
            "packets": {
                "tiny": sum(1 for s in every if s <= TINY_MAX_CHARS),
                "normal": sum(1 for s in every if TINY_MAX_CHARS < s < LARGE_MIN_CHARS),
                "large": sum(1 for s in every if s >= LARGE_MIN_CHARS),
            },
            "first_text_ms": round(self.text_times[0], 1) if timed and self.text_times else None,
            "gap_ms": gap_stats(self.text_times) if timed else None,
        }

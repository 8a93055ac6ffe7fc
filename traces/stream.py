"""Assembling a streamed chat completion from its chunks, noting every irregularity.

Real servers disagree on how deltas look: some omit `index`, repeat the id and name in every
chunk, or send arguments cumulatively. The assembler rebuilds the message the model meant and
records each irregularity as an anomaly (data for the checks), instead of guessing silently.
Only choice 0 makes the message (a request with `n` streams the others interleaved); the
others are counted, and stay whole in the raw events.
"""

from __future__ import annotations

from typing import Any

from traces.stream_quality import DeliveryLog

_TEXT_FIELDS = ("content", "reasoning_content", "reasoning")
_STRUCTURED_FIELDS = frozenset((*_TEXT_FIELDS, "role", "tool_calls", "reasoning_details"))


def _content(delta: dict[str, Any]) -> str:
    piece = delta.get("content")
    return piece if isinstance(piece, str) else ""


def _reasoning(delta: dict[str, Any]) -> str:
    """The reasoning a delta carried, counted once: hosts moving from `reasoning_content` to
    `reasoning` send the same piece in both, OpenRouter its text again in a detail."""
    for name in ("reasoning_content", "reasoning"):
        piece = delta.get(name)
        if isinstance(piece, str) and piece:
            return piece
    details = delta.get("reasoning_details")
    if not isinstance(details, list):
        return ""
    return "".join(
        d[key]
        for d in details
        if isinstance(d, dict)
        for key in ("text", "summary")
        if isinstance(d.get(key), str)
    )


class StreamAssembler:
    """Feeds on parsed `chat.completion.chunk` objects and yields the assembled message."""

    def __init__(self) -> None:
        """Start with an empty message."""
        self.text: dict[str, list[str]] = {name: [] for name in _TEXT_FIELDS}
        self.reasoning_details: list[Any] = []
        self.calls: list[dict[str, Any]] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.role: str | None = None
        self.extra: dict[str, Any] = {}
        self.anomalies: list[dict[str, Any]] = []
        self.first_ms: dict[str, float] = {}
        self.delivery = DeliveryLog(self.anomalies)
        """Sizes and arrival of every chunk, and the delivery's own irregularities."""
        self.choices: set[int] = set()
        """Indices of the choices the stream carried."""
        self.logprobs: list[Any] = []
        """Choice 0's `logprobs` objects, one per chunk that had one."""

    def _note(self, kind: str, **evidence: Any) -> None:
        self.anomalies.append({"kind": kind, **evidence})

    def _note_once(self, call: dict[str, Any], kind: str, **evidence: Any) -> None:
        # A quirk repeats on every chunk of a call; one record of it per call is evidence
        # enough and keeps a 2,000-chunk stream from producing 2,000 anomalies.
        if kind not in call["noted"]:
            call["noted"].add(kind)
            self._note(kind, **evidence)

    def feed(self, chunk: dict[str, Any], t_ms: float) -> None:
        """Take one chunk that arrived `t_ms` after the request was sent."""
        position = self.delivery.chunk(bool(chunk.get("usage")))
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or []
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            self.choices.add(index if isinstance(index, int) else 0)
            if index not in (0, None):
                continue  # another choice of `n`: kept raw in the events, not merged into 0
            if choice.get("logprobs") is not None:
                self.logprobs.append(choice["logprobs"])
            delta = choice.get("delta") or {}
            if choice.get("finish_reason") is not None:
                if self.finish_reason is not None and self.finish_reason != choice["finish_reason"]:
                    self._note(
                        "finish_reason_changed",
                        first=self.finish_reason,
                        then=choice["finish_reason"],
                    )
                self.finish_reason = choice["finish_reason"]
            self._feed_delta(delta, t_ms, position)

    def _feed_delta(self, delta: dict[str, Any], t_ms: float, position: int) -> None:
        if delta.get("role"):
            self.role = delta["role"]
        for name in _TEXT_FIELDS:
            piece = delta.get(name)
            if isinstance(piece, str) and piece:
                self.text[name].append(piece)
                kind = "content" if name == "content" else "reasoning"
                self.first_ms.setdefault(kind, t_ms)
        details = delta.get("reasoning_details")
        if isinstance(details, list) and details:
            for detail in details:
                self._merge_detail(detail)
            self.first_ms.setdefault("reasoning", t_ms)
        for key, value in delta.items():
            if key not in _STRUCTURED_FIELDS and value is not None:
                self.extra[key] = value
        entries = delta.get("tool_calls") or []
        indices = [e.get("index") for e in entries if e.get("index") is not None]
        if len(indices) != len(set(indices)):
            self._note("tool_call_index_split", indices=indices)
        arguments = []
        for place, call_delta in enumerate(entries):
            self.first_ms.setdefault("tool_call", t_ms)
            piece = self._feed_call(call_delta, place)
            if piece:
                arguments.append(piece)
        self.delivery.delta(_content(delta), _reasoning(delta), arguments, t_ms, position)

    def _merge_detail(self, detail: Any) -> None:
        # Streams send reasoning_details in pieces; a piece of the same type (and index, when
        # given) continues the previous entry, as the non-streaming response would have it.
        last = self.reasoning_details[-1] if self.reasoning_details else None
        same = (
            isinstance(detail, dict)
            and isinstance(last, dict)
            and detail.get("type") == last.get("type")
            and detail.get("index") == last.get("index")
        )
        if not same:
            self.reasoning_details.append(dict(detail) if isinstance(detail, dict) else detail)
            return
        assert isinstance(last, dict) and isinstance(detail, dict)
        for key in ("text", "summary", "data"):
            if isinstance(detail.get(key), str):
                last[key] = str(last.get(key) or "") + detail[key]
        for key, value in detail.items():
            if key not in ("text", "summary", "data") and value is not None:
                last[key] = value

    def _feed_call(self, call_delta: dict[str, Any], position: int) -> str:
        """Take one tool-call entry; the piece of string arguments it carried ("" if none)."""
        call = self._find_call(call_delta, position)
        function = call_delta.get("function") or {}
        if call_delta.get("id"):
            if call["id"] and call["id"] != call_delta["id"]:
                self._note("tool_call_id_changed", first=call["id"], then=call_delta["id"])
            elif call["id"] == call_delta["id"]:
                self._note_once(call, "tool_call_id_repeated", id=call_delta["id"])
            call["id"] = call_delta["id"]
        if call_delta.get("type"):
            call["type"] = call_delta["type"]
        name = function.get("name")
        if name:
            if call["name"] and call["name"] != name:
                self._note("tool_call_name_changed", first=call["name"], then=name)
            elif call["name"] == name:
                self._note_once(call, "tool_call_name_repeated", name=name)
            call["name"] = name
        args = function.get("arguments")
        if isinstance(args, dict):
            call["object_arguments"] = args
            self._note_once(call, "tool_call_arguments_object_in_stream", name=call["name"])
        elif isinstance(args, str) and args:
            so_far = "".join(call["pieces"])
            if so_far and args.startswith(so_far) and len(args) > len(so_far):
                # Cumulative arguments: each chunk repeats everything sent so far.
                self._note_once(call, "tool_call_arguments_cumulative", name=call["name"])
                call["pieces"] = [args]
            else:
                call["pieces"].append(args)
            return args
        return ""

    def _find_call(self, call_delta: dict[str, Any], position: int) -> dict[str, Any]:
        index = call_delta.get("index")
        if index is None:
            if not any(a["kind"] == "tool_call_index_missing" for a in self.anomalies):
                self._note("tool_call_index_missing")
            # Without an index, a new id starts a new call; otherwise it continues the last.
            new_id = call_delta.get("id")
            known = [c for c in self.calls if new_id and c["id"] == new_id]
            if known:
                return known[0]
            if new_id or not self.calls:
                return self._new_call(len(self.calls))
            return self.calls[-1]
        for call in self.calls:
            if call["index"] == index:
                return call
        if not self.calls and index != 0:
            self._note("tool_call_index_not_zero_based", first_index=index)
        return self._new_call(index)

    def _new_call(self, index: int) -> dict[str, Any]:
        call: dict[str, Any] = {
            "index": index,
            "id": None,
            "type": None,
            "name": None,
            "pieces": [],
            "object_arguments": None,
            "noted": set(),
        }
        self.calls.append(call)
        return call

    def message(self) -> dict[str, Any]:
        """The assistant message as a non-streaming response would have carried it."""
        message: dict[str, Any] = {"role": self.role or "assistant"}
        message["content"] = "".join(self.text["content"]) if self.text["content"] else None
        for name in ("reasoning_content", "reasoning"):
            if self.text[name]:
                message[name] = "".join(self.text[name])
        if self.reasoning_details:
            message["reasoning_details"] = self.reasoning_details
        message.update(self.extra)
        if self.calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": c["type"] or "function",
                    "function": {
                        "name": c["name"] or "",
                        "arguments": c["object_arguments"]
                        if c["object_arguments"] is not None
                        else "".join(c["pieces"]),
                    },
                }
                for c in sorted(self.calls, key=lambda c: c["index"])
            ]
        return message

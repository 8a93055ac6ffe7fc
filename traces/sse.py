"""Reading a chat-completions stream (server-sent events, or chunks a log kept) into the
exchange it makes, with every raw line and its arrival time."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from traces import strict_json
from traces.exchange import Exchange
from traces.http_errors import error_message
from traces.model import ExchangeError, StreamEvent
from traces.one_line import one_line
from traces.responses import choice_reading, sampling_anomalies, upstream_of
from traces.stream import StreamAssembler

STREAM_CUT = "stream ended before it finished: no finish_reason, no [DONE]"
"""The error message of a stream `StreamReader.cut_short` says was cut."""
EMPTY_STREAM = "the stream carried no choice, only [DONE] or usage"
"""How a stream `StreamReader.generated_nothing` says was empty is described."""


class StreamReader:
    """Reads a chat-completions stream, raw SSE line by line or parsed chunk by chunk.

    Keeps every raw line with its arrival time, feeds the chunks to a `StreamAssembler`, and
    notes an error event inside the stream and the upstream host a router names.
    """

    def __init__(self) -> None:
        """Start before the first line."""
        self.assembler = StreamAssembler()
        self.events: list[StreamEvent] = []
        self.broken: str | None = None
        self.saw_done = False
        self.upstream: str | None = None
        self.choices = 0
        """Chunks that carried at least one choice: what was generated, however little."""

    def line(self, line: str, t_ms: float) -> None:
        """Take one non-empty raw line that arrived `t_ms` after the request was sent."""
        self.events.append(StreamEvent(t_ms=t_ms, line=line))
        if not line.startswith("data:"):
            return
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.saw_done = True
            return
        try:
            chunk = strict_json.loads(payload)
        except ValueError as exc:
            # Not JSON, or JSON no strict parser takes (`NaN`, `1e999`, nested 100,000 deep):
            # the line stays in the events, the chunk is not read.
            self.assembler.anomalies.append(
                {"kind": "unparsable_chunk", "line": line[:500], "reason": str(exc)[:200]}
            )
            return
        self.chunk(chunk, t_ms, payload)

    def chunk(self, chunk: Any, t_ms: float, payload: str | None = None) -> None:
        """Take one parsed chunk (`payload` is its raw text, when there was one)."""
        if not isinstance(chunk, dict):
            return
        if "error" in chunk and not chunk.get("choices"):
            text = payload if payload is not None else json.dumps(chunk, ensure_ascii=False)
            self.broken = one_line(f"error inside stream: {error_message(text)}")
            return
        if chunk.get("choices"):
            self.choices += 1
        self.assembler.feed(chunk, t_ms)
        self.upstream = self.upstream or upstream_of(chunk)

    def close(self) -> None:
        """The stream ended: note a missing `[DONE]`."""
        if not self.saw_done:
            self.assembler.anomalies.append({"kind": "stream_without_done"})

    def cut_short(self) -> bool:
        """Whether the stream stopped before its end: chunks came, then neither a
        finish_reason nor `[DONE]` (a host that lost its upstream, a connection closed
        mid-stream). What arrived is then a fragment, not an answer. A stream that finished
        without `[DONE]` is complete (some hosts never send it; the anomaly notes it)."""
        return (
            any(event.line.startswith("data:") for event in self.events)
            and not self.saw_done
            and self.assembler.finish_reason is None
            and self.broken is None
        )

    def generated_nothing(self) -> bool:
        """Whether the stream ended without a single choice: no delta, no finish_reason,
        nothing unreadable either (only `[DONE]`, a usage chunk, or no event at all). The
        host failed before the first token; an empty turn the model ended still comes as a
        choice with a finish_reason."""
        unreadable = any(a["kind"] == "unparsable_chunk" for a in self.assembler.anomalies)
        return self.choices == 0 and self.broken is None and not unreadable

    def exchange(
        self,
        *,
        request_body: dict[str, Any],
        started_at: datetime,
        latency_ms: float,
        http_status: int | None,
        headers: dict[str, str],
    ) -> Exchange:
        """The exchange the stream read so far makes."""
        assembler = self.assembler
        anomalies = assembler.anomalies
        if assembler.finish_reason is not None and self.broken is None:
            # Only a finished stream has a last chunk and a whole text to judge its delivery.
            anomalies = [*anomalies, *assembler.delivery.closing_anomalies()]
        exchange = Exchange(
            request_body=request_body,
            started_at=started_at,
            latency_ms=latency_ms,
            streamed=True,
            http_status=http_status,
            headers=headers,
            stream_events=self.events,
            message=assembler.message(),
            finish_reason_raw=assembler.finish_reason,
            usage_raw=assembler.usage,
            ttft_reasoning_ms=assembler.first_ms.get("reasoning"),
            ttft_content_ms=assembler.first_ms.get("content"),
            ttft_tool_call_ms=assembler.first_ms.get("tool_call"),
            anomalies=anomalies,
            upstream_provider=self.upstream,
        )
        if assembler.choices:
            reading = choice_reading(len(assembler.choices), assembler.logprobs)
            exchange.anomalies = [
                *exchange.anomalies,
                *sampling_anomalies(request_body, reading, exchange.message),
            ]
        if self.broken:
            exchange.error = ExchangeError(
                kind="server_error", status=http_status, message=self.broken
            )
        return exchange

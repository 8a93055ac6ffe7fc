"""What the proxy keeps of one recorded exchange while it relays the answer: the bytes as
they pass (an SSE stream split into lines with their arrival times), read at the end into the
same `Exchange` the endpoint client makes (`traces.exchange_reading`), keys redacted. Text
completions and Responses API answers are read as `readings` says.

Nothing here is on the client's path but appending bytes and their arrival times: the lines
are split and read once the answer has ended, when the relay asks for the exchange (which it
may do a little later, off the path of the next request: the clock stops at `stop`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from traces.elapsed import elapsed_ms
from traces.exchange import Exchange
from traces.exchange_reading import finish_stream, parse_body
from traces.http_errors import http_error
from traces.model import ErrorKind, ExchangeError
from traces.one_line import one_line
from traces.proxy.paths import Kind
from traces.proxy.readings import CompletionStreamReader, ResponsesReading, completion_as_chat
from traces.redaction import Redactor
from traces.responses import KEPT_HEADERS
from traces.sse import StreamReader


def start_clock() -> tuple[datetime, float]:
    """Now, as a capture's clock starts: the wall time (UTC, naive) and the perf counter."""
    return datetime.now(UTC).replace(tzinfo=None), time.perf_counter()


class Capture:
    """One exchange as it passes through: the request body, then the answer's bytes."""

    def __init__(
        self,
        body: dict[str, Any],
        redactor: Redactor,
        kind: Kind = "chat",
        *,
        clock: tuple[datetime, float] | None = None,
    ) -> None:
        """Start timing now (the request is about to leave for the upstream), or at `clock`:
        the wall time and `time.perf_counter()` reading taken when it was about to."""
        self.body = body
        self.redactor = redactor
        self.kind = kind
        self.responses = ResponsesReading() if kind == "responses" else None
        """What is read of a Responses API answer (None for the other kinds)."""
        self.streamed = body.get("stream") is True
        self.started_at, self.t0 = clock if clock is not None else start_clock()
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self._reader: StreamReader | None = None
        self._sse = False
        self._pending = b""
        self._raw: list[bytes] = []
        self._pieces: list[tuple[bytes, float]] = []
        """An SSE body's pieces as they came, with their arrival times (read at the end)."""
        self._stopped: float | None = None

    def answered(self, status: int, headers: dict[str, str]) -> None:
        """The status line and headers came (`headers` with lower-case names)."""
        self.status = status
        self.headers = {k: v for k in KEPT_HEADERS if (v := headers.get(k)) is not None}
        is_sse = headers.get("content-type", "").startswith("text/event-stream")
        if self.streamed and status < 400 and is_sse:
            self._sse = True
            if self.kind == "chat":
                self._reader = StreamReader()
            elif self.kind == "completion":
                self._reader = CompletionStreamReader()

    def data(self, chunk: bytes) -> None:
        """Bytes of the body, as relayed."""
        if self._sse:
            self._pieces.append((chunk, elapsed_ms(self.t0)))
        else:
            self._raw.append(chunk)

    def stop(self) -> None:
        """The answer ended (or broke, or the client left): its latency is measured to now,
        whenever the exchange is then asked for."""
        if self._stopped is None:
            self._stopped = time.perf_counter()

    def _elapsed_ms(self) -> float:
        end = self._stopped if self._stopped is not None else time.perf_counter()
        return round((end - self.t0) * 1000, 3)

    def _read_pieces(self) -> None:
        """Split what came into lines and read them, each with its piece's arrival time."""
        for chunk, t_ms in self._pieces:
            lines = (self._pending + chunk).split(b"\n")
            self._pending = lines.pop()
            for line in lines:
                if line.endswith(b"\r"):
                    line = line[:-1]
                if line:  # the blank separator between events carries nothing to keep
                    self._line(line.decode("utf-8", errors="replace"), t_ms)
        self._pieces = []

    def _line(self, line: str, t_ms: float) -> None:
        if self._reader is not None:
            self._reader.line(line, t_ms)
        elif self.responses is not None:
            self.responses.line(line, t_ms)

    def ended(self) -> Exchange:
        """The answer ended as it should (the upstream closed the body)."""
        return self.redactor.exchange(self._exchange(None))

    def lost(self, exc: BaseException) -> Exchange:
        """The upstream connection broke or timed out before or during the answer."""
        kind: ErrorKind = "timeout" if "Timeout" in type(exc).__name__ else "connection"
        detail = one_line(str(exc) or type(exc).__name__)
        if self.status is None:
            message = f"cannot reach the upstream: {detail}"
        elif kind == "timeout":
            message = "response timed out mid-body"
        else:
            message = f"connection lost: {detail}"
        error = ExchangeError(kind=kind, status=self.status, message=message)
        return self.redactor.exchange(self._exchange(error))

    def cancelled(self) -> Exchange:
        """The client hung up before the answer ended; the upstream request was cancelled.
        An error status that had already come stays the step's error: the host refused,
        whatever the client did next (Qwen Code retrying a 429 now and then hangs up on the
        status line, before the error body)."""
        elapsed = self._elapsed_ms()
        if self.status is not None and self.status >= 400:
            raw = b"".join(self._raw).decode("utf-8", errors="replace")
            refused = http_error(self.status, raw)
            refused.message += " (the client hung up before the error body ended)"
            return self.redactor.exchange(self._plain(raw or None, refused, elapsed))
        error = ExchangeError(
            kind="cancelled",
            status=self.status,
            message=f"the client disconnected {elapsed:.0f} ms into the request, before the "
            "answer ended; the proxy cancelled the upstream request",
        )
        return self.redactor.exchange(self._exchange(error, closing=False))

    def _exchange(self, error: ExchangeError | None, *, closing: bool = True) -> Exchange:
        latency_ms = self._elapsed_ms()
        reader = self._reader
        status = self.status
        self._read_pieces()
        if self._sse and self._pending.strip():
            self._line(self._pending.decode("utf-8", errors="replace"), latency_ms)
            self._pending = b""
        if self.responses is not None:
            return self._responses(error, latency_ms)
        if reader is not None and status is not None:
            if closing:
                exchange = finish_stream(
                    reader, self.body, self.started_at, self.t0, status, self.headers, lost=error
                )
                exchange.latency_ms = latency_ms  # to `stop`, not to now
                return exchange
            exchange = reader.exchange(
                request_body=self.body,
                started_at=self.started_at,
                latency_ms=latency_ms,
                http_status=status,
                headers=self.headers,
            )
            exchange.error = error
            return exchange
        raw = b"".join(self._raw).decode("utf-8", errors="replace")
        if error is None and status is not None:
            if status >= 400:
                return self._plain(raw or None, http_error(status, raw), latency_ms)
            read = completion_as_chat(raw) if self.kind == "completion" else raw
            exchange = parse_body(read, self.body, self.started_at, self.t0, status, self.headers)
            exchange.response_body = raw  # the upstream's bytes, not a converted completion
            exchange.latency_ms = latency_ms
            return exchange
        return self._plain(raw or None, error, latency_ms)

    def _responses(self, error: ExchangeError | None, latency_ms: float) -> Exchange:
        """A Responses API exchange: raw, with the output text and usage read."""
        reading = self.responses
        assert reading is not None
        raw = b"".join(self._raw).decode("utf-8", errors="replace")
        status = self.status
        if not self._sse and raw and status is not None and status < 400:
            reading.body(raw)
        if error is None and status is not None:
            if status >= 400:
                error = http_error(status, raw)
            elif reading.failure is not None:
                error = ExchangeError(
                    kind="server_error", status=status, message=one_line(reading.failure)
                )
        return Exchange(
            request_body=self.body,
            started_at=self.started_at,
            latency_ms=latency_ms,
            streamed=self._sse,
            http_status=status,
            headers=self.headers,
            response_body=None if self._sse else raw or None,
            stream_events=reading.events if self._sse else None,
            message=reading.message(),
            # No finish_reason: a response's `status` is another thing (it stays in the raw).
            usage_raw=reading.usage(),
            ttft_content_ms=reading.first_text_ms,
            error=error,
        )

    def _plain(self, raw: str | None, error: ExchangeError | None, latency_ms: float) -> Exchange:
        return Exchange(
            request_body=self.body,
            started_at=self.started_at,
            latency_ms=latency_ms,
            streamed=self.streamed,
            http_status=self.status,
            headers=self.headers,
            response_body=raw,
            error=error,
        )

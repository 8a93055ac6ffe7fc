"""What the proxy keeps of one chat-completions exchange while it relays the answer: the
bytes as they pass (an SSE stream split into lines with their arrival times), read at the end
into the same `Exchange` the endpoint client makes (`traces.exchange_reading`), keys redacted.

Nothing here is on the client's path but appending bytes: lines are split and chunks parsed
as they arrive (the reader is incremental), everything else once the answer has ended.
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
from traces.redaction import Redactor
from traces.responses import KEPT_HEADERS
from traces.sse import StreamReader


class Capture:
    """One exchange as it passes through: the request body, then the answer's bytes."""

    def __init__(self, body: dict[str, Any], redactor: Redactor) -> None:
        """Start timing now: the request is about to leave for the upstream."""
        self.body = body
        self.redactor = redactor
        self.streamed = body.get("stream") is True
        self.started_at = datetime.now(UTC).replace(tzinfo=None)
        self.t0 = time.perf_counter()
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self._reader: StreamReader | None = None
        self._pending = b""
        self._raw: list[bytes] = []

    def answered(self, status: int, headers: dict[str, str]) -> None:
        """The status line and headers came (`headers` with lower-case names)."""
        self.status = status
        self.headers = {k: v for k in KEPT_HEADERS if (v := headers.get(k)) is not None}
        is_sse = headers.get("content-type", "").startswith("text/event-stream")
        if self.streamed and status < 400 and is_sse:
            self._reader = StreamReader()

    def data(self, chunk: bytes) -> None:
        """Bytes of the body, as relayed."""
        reader = self._reader
        if reader is None:
            self._raw.append(chunk)
            return
        t_ms = elapsed_ms(self.t0)
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if line:  # the blank separator between events carries nothing to keep
                reader.line(line.decode("utf-8", errors="replace"), t_ms)

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
        elapsed = elapsed_ms(self.t0)
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
        latency_ms = elapsed_ms(self.t0)
        reader = self._reader
        status = self.status
        if reader is not None and status is not None:
            if self._pending.strip():
                reader.line(self._pending.decode("utf-8", errors="replace"), latency_ms)
                self._pending = b""
            if closing:
                return finish_stream(
                    reader, self.body, self.started_at, self.t0, status, self.headers, lost=error
                )
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
            return parse_body(raw, self.body, self.started_at, self.t0, status, self.headers)
        return self._plain(raw or None, error, latency_ms)

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

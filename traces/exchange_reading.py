"""Turning the raw bytes of a chat-completions answer into an `Exchange`: a whole body, or a
stream a `StreamReader` has read. Shared by the endpoint client (which receives the answer)
and the recording proxy (which relays it), so both read an answer the same way."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from traces import strict_json
from traces.elapsed import elapsed_ms
from traces.exchange import Exchange
from traces.http_errors import empty_response, invalid_response
from traces.model import ExchangeError
from traces.one_line import one_line
from traces.responses import (
    no_choices,
    read_choices,
    read_completion,
    sampling_anomalies,
    upstream_of,
)
from traces.sse import EMPTY_STREAM, STREAM_CUT, StreamReader


def parse_body(
    raw: str,
    body: dict[str, Any],
    started_at: datetime,
    t0: float,
    status: int,
    headers: dict[str, str],
) -> Exchange:
    """The exchange of a whole (not streamed) 200 body `raw`: the completion read, or the
    error that says why it is none (empty, no choice, cut mid-JSON, not a completion)."""
    latency_ms = elapsed_ms(t0)
    exchange = Exchange(
        request_body=body,
        started_at=started_at,
        latency_ms=latency_ms,
        streamed=False,
        http_status=status,
        headers=headers,
        response_body=raw,
    )
    if not raw.strip():
        exchange.error = empty_response(status, raw, "the body is empty")
        return exchange
    try:
        parsed = strict_json.loads(raw)
        if no_choices(parsed):
            exchange.error = empty_response(status, raw, "the completion has no choice")
            exchange.usage_raw = parsed.get("usage")
            return exchange
        exchange.message, exchange.finish_reason_raw, exchange.usage_raw = read_completion(parsed)
        exchange.anomalies = sampling_anomalies(body, read_choices(parsed), exchange.message)
        exchange.upstream_provider = upstream_of(parsed)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        if isinstance(exc, ValueError) and strict_json.ends_early(exc, raw):
            # The body stops mid-JSON: the connection closed before the end (a framing that
            # reads until close cannot tell), so it is retried like a dropped connection.
            exchange.error = ExchangeError(
                kind="connection",
                status=status,
                message=one_line(f"response body ended early: {exc}"),
                body=raw,
            )
        else:
            exchange.error = invalid_response(status, raw, exc)
    return exchange


def finish_stream(
    reader: StreamReader,
    body: dict[str, Any],
    started_at: datetime,
    t0: float,
    status: int,
    headers: dict[str, str],
    *,
    lost: ExchangeError | None = None,
) -> Exchange:
    """The exchange of a stream `reader` has read to its end; `lost` is the error of a
    transport that broke off mid-stream (what arrived before the cut is kept)."""
    reader.close()
    exchange = reader.exchange(
        request_body=body,
        started_at=started_at,
        latency_ms=elapsed_ms(t0),
        http_status=status,
        headers=headers,
    )
    if lost is not None:
        exchange.error = lost
    elif reader.events and not any(e.line.startswith("data:") for e in reader.events):
        # Not a stream at all (a JSON error object sent with 200): nothing to assemble.
        raw = "\n".join(e.line for e in reader.events)
        exchange.anomalies = []
        exchange.message = None
        exchange.response_body = raw
        exchange.error = invalid_response(status, raw, ValueError("no `data:` line in the stream"))
    elif exchange.error is None and reader.generated_nothing():
        # A 200 whose stream never carried a choice: the host failed before the first token.
        exchange.message = None
        exchange.error = empty_response(status, "", EMPTY_STREAM)
    elif exchange.error is None and reader.cut_short():
        # HTTP ended the body cleanly, the stream did not end: the partial text is no answer.
        exchange.error = ExchangeError(kind="connection", status=status, message=STREAM_CUT)
    return exchange

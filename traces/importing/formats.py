"""One line of an import file, validated into a typed exchange.

Two formats:

- **exchanges**: `{"request": <chat.completions body>, "response": <chat.completion>}`, or
  `"chunks": [<chat.completion.chunk> | raw SSE line, …]` for a stream, or `"error":
  {"status": N, "body": …}` for a failed call; optional `provider`, `model`, `latency_ms`,
  `started_at` (ISO 8601 or epoch seconds), `conversation`, `status` (HTTP status of a
  successful call) and `headers` (response headers; only the kept ones are stored).
- **k2vv**: a K2-Vendor-Verifier result line (`tool_calls_eval.py`, `ValidationResult`):
  `data_index`, `request` (the body sent), `response` (the `chat.completion` as
  `model_dump()`ed by the openai SDK, rebuilt from the deltas for streams, or `{"error":
  str(exception)}` when the call failed), `status` (`success` or `failed`),
  `finish_reason`, `tool_calls_valid`, `last_run_at` (local time, when the result was
  written), `duration_ms` and `hash` (md5 of the request).

A response that is not a chat completion is not a malformed line: it is what the provider
sent, and becomes an `invalid_response` step exactly as it would when recording live.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from traces import strict_json
from traces.exchange import Exchange
from traces.http_errors import empty_response, error_message, http_error, invalid_response
from traces.importing.lines import LineError
from traces.model import ErrorKind, ExchangeError
from traces.one_line import one_line
from traces.redaction import redact_request
from traces.responses import (
    KEPT_HEADERS,
    no_choices,
    read_choices,
    read_completion,
    sampling_anomalies,
    upstream_of,
)
from traces.sse import EMPTY_STREAM, STREAM_CUT, StreamReader

_ERROR_KINDS: frozenset[str] = frozenset(get_args(ErrorKind))
_SDK_STATUS_ERROR = re.compile(r"^Error code: (\d{3})(?: - (.*))?$", re.DOTALL)
"""How the openai SDK words an HTTP error (`str(APIStatusError)`), as K2VV logs it."""
_TEXT = json.JSONEncoder(ensure_ascii=False)


@dataclass(slots=True)
class LoggedExchange:
    """One line, validated: the exchange it records and what it says about its run."""

    line: int
    exchange: Exchange
    messages: list[dict[str, Any]]
    """The request's messages (also inside `exchange.request_body`)."""
    timed: bool
    """Whether `exchange.started_at` came from the log (else it is the import time)."""
    group: str | None
    """Lines with the same group form one run; None makes the line a run of its own."""
    conversation: str | None
    """The run's label (`runs.conversation`)."""
    provider: str | None
    model: str | None
    stream_lines: list[str] | None = None
    """Raw SSE lines of a logged stream, whose arrival times the log does not have."""
    settings: dict[str, Any] = field(default_factory=dict)
    """What the format says about the run beyond the exchange (K2VV's own verdicts)."""


def read_exchange_line(obj: dict[str, Any], line: int, now: datetime) -> LoggedExchange:
    """Validate one line of an exchange log; LineError names the field at fault."""
    request, messages = _request(obj)
    provider = _optional_str(obj, "provider")
    model = _optional_str(obj, "model")
    conversation = obj.get("conversation")
    if conversation is not None and (
        isinstance(conversation, bool) or not isinstance(conversation, str | int)
    ):
        raise LineError("conversation", "must be a string or an integer")
    label = None if conversation is None else str(conversation)
    started_at, timed = _started_at(obj.get("started_at"), "started_at", now)
    latency_ms = _duration(obj.get("latency_ms"), "latency_ms")
    headers = _headers(obj.get("headers"))
    status = obj.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise LineError("status", "must be an integer HTTP status")
    present = [name for name in ("response", "chunks", "error") if obj.get(name) is not None]
    if len(present) != 1:
        raise LineError(
            None,
            "needs exactly one of `response`, `chunks` or `error`"
            + (f" (has {', '.join(present)})" if present else ""),
        )
    common: dict[str, Any] = {
        "request_body": request,
        "started_at": started_at,
        "latency_ms": latency_ms,
        "headers": headers,
    }
    stream_lines: list[str] | None = None
    if present[0] == "error":
        exchange = _error_exchange(obj["error"], common, bool(request.get("stream")))
    elif present[0] == "chunks":
        exchange, stream_lines = _stream_exchange(obj["chunks"], common, status or 200)
    else:
        exchange = _response_exchange(obj["response"], common, status or 200, request)
    return LoggedExchange(
        line=line,
        exchange=exchange,
        messages=messages,
        timed=timed,
        group=label,
        conversation=label,
        provider=provider,
        model=model or _model_of(request, obj.get(present[0])),
        stream_lines=stream_lines,
    )


def read_k2vv_line(obj: dict[str, Any], line: int, now: datetime) -> LoggedExchange:
    """Validate one K2-Vendor-Verifier result line; each becomes a one-step run."""
    data_index = obj.get("data_index")
    if isinstance(data_index, bool) or not isinstance(data_index, int):
        raise LineError("data_index", "must be an integer")
    status = obj.get("status")
    if not isinstance(status, str):
        raise LineError("status", "must be a string (success or failed)")
    finish_reason = _optional_str(obj, "finish_reason")
    valid = obj.get("tool_calls_valid")
    if valid is not None and not isinstance(valid, bool):
        raise LineError("tool_calls_valid", "must be true, false or null")
    verdict_hash = _optional_str(obj, "hash")
    last_run_at = _optional_str(obj, "last_run_at")
    duration = obj.get("duration_ms")
    latency_ms = _duration(duration, "duration_ms")
    request, messages = _request(obj, allow_prompt=True)
    # `last_run_at` is taken when the result is written, after the response: the request
    # left `duration_ms` before. It is the verifier's local time (no zone); kept as is.
    ended, timed = _started_at(last_run_at, "last_run_at", now)
    started_at = ended - timedelta(milliseconds=latency_ms) if timed else ended
    common: dict[str, Any] = {
        "request_body": request,
        "started_at": started_at,
        "latency_ms": latency_ms,
        "headers": {},
    }
    response = obj.get("response")
    streamed = bool(request.get("stream"))
    if isinstance(response, dict) and "choices" in response:
        exchange = _response_exchange(response, common, 200, request, text_choices=True)
        exchange.streamed = streamed
    elif isinstance(response, dict) and response.get("error") is not None:
        failure = _sdk_error(response["error"])
        exchange = Exchange(**common, streamed=streamed, http_status=failure.status, error=failure)
    elif response is not None and not isinstance(response, dict):
        raise LineError("response", "must be an object or null")
    else:
        exchange = Exchange(
            **common,
            streamed=streamed,
            response_body=None if response is None else _TEXT.encode(response),
            error=ExchangeError(
                kind="other" if status != "success" else "invalid_response",
                message=f"K2VV status {status} without a chat completion",
            ),
        )
    return LoggedExchange(
        line=line,
        exchange=exchange,
        messages=messages,
        timed=timed,
        group=None,
        conversation=str(data_index),
        provider=None,
        model=_model_of(request, response),
        settings={
            "k2vv": {
                "data_index": data_index,
                "status": status,
                "finish_reason": finish_reason,
                "tool_calls_valid": valid,
                "hash": verdict_hash,
                "last_run_at": last_run_at,
                "duration_ms": duration,
            }
        },
    )


# -- fields -----------------------------------------------------------------------------------


def _request(obj: dict[str, Any], allow_prompt: bool = False) -> tuple[dict[str, Any], list[Any]]:
    request = obj.get("request")
    if not isinstance(request, dict):
        raise LineError("request", "missing" if request is None else "must be an object")
    messages = request.get("messages")
    if messages is None and allow_prompt and isinstance(request.get("prompt"), str):
        messages = []  # K2VV's raw /v1/completions mode sends a rendered prompt instead
    if not isinstance(messages, list):
        raise LineError(
            "request.messages", "missing" if messages is None else "must be a list of messages"
        )
    for position, message in enumerate(messages):
        if not isinstance(message, dict):
            raise LineError(f"request.messages[{position}]", "must be an object")
        if not isinstance(message.get("role"), str):
            raise LineError(f"request.messages[{position}].role", "missing or not a string")
    body = redact_request(request)
    if "messages" not in body:
        body = {**body, "messages": messages}
    return body, messages


def _optional_str(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise LineError(name, "must be a string")
    return value or None


def _started_at(value: Any, name: str, now: datetime) -> tuple[datetime, bool]:
    """(UTC time without zone, whether the log had it); `now` when it did not."""
    if value is None:
        return now, False
    if isinstance(value, bool):
        raise LineError(name, "must be an ISO 8601 time or epoch seconds")
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value  # epoch milliseconds, as JS logs
        try:
            return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None), True
        except (OverflowError, OSError, ValueError):
            raise LineError(name, f"epoch time {value} is out of range") from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise LineError(name, f"not an ISO 8601 time: {value[:40]!r}") from None
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        return parsed, True
    raise LineError(name, "must be an ISO 8601 time or epoch seconds")


def _duration(value: Any, name: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise LineError(name, "must be a non-negative number of milliseconds")
    return float(value)


def _headers(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LineError("headers", "must be an object of response headers")
    lowered = {str(k).lower(): v for k, v in value.items()}
    return {k: str(lowered[k]) for k in KEPT_HEADERS if lowered.get(k) is not None}


def _model_of(request: dict[str, Any], response: Any) -> str | None:
    """The model the request asked for, else the one the response (or first chunk) names."""
    model = request.get("model")
    if isinstance(model, str) and model:
        return model
    if isinstance(response, list):
        response = next((chunk for chunk in response if isinstance(chunk, dict)), None)
    if isinstance(response, dict):
        served = response.get("model")
        return served if isinstance(served, str) and served else None
    return None


# -- exchanges --------------------------------------------------------------------------------


def _response_exchange(
    response: Any,
    common: dict[str, Any],
    status: int,
    request: dict[str, Any],
    text_choices: bool = False,
) -> Exchange:
    """A logged response: the parsed `chat.completion`, or its raw text."""
    if isinstance(response, str):
        raw = response
        try:
            parsed: Any = strict_json.loads(raw)
        except ValueError as exc:
            return Exchange(
                **common,
                streamed=bool(request.get("stream")),
                http_status=status,
                response_body=raw,
                error=invalid_response(status, raw, exc),
            )
    elif isinstance(response, dict):
        parsed, raw = response, _TEXT.encode(response)
    else:
        raise LineError("response", "must be a chat.completion object or its raw text")
    exchange = Exchange(
        **common,
        streamed=bool(request.get("stream")),
        http_status=status,
        response_body=raw,
    )
    if no_choices(parsed):
        exchange.error = empty_response(status, raw, "the completion has no choice")
        exchange.usage_raw = parsed.get("usage")
        return exchange
    try:
        exchange.message, exchange.finish_reason_raw, exchange.usage_raw = read_completion(parsed)
        exchange.anomalies = sampling_anomalies(request, read_choices(parsed), exchange.message)
        exchange.upstream_provider = upstream_of(parsed)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        text = _text_choice(parsed) if text_choices else None
        if text is None:
            exchange.error = invalid_response(status, raw, exc)
        else:  # a /v1/completions answer: the rendered text is the whole message
            exchange.message = {"role": "assistant", "content": text}
            exchange.finish_reason_raw = parsed["choices"][0].get("finish_reason")
            exchange.usage_raw = parsed.get("usage")
    return exchange


def _text_choice(parsed: Any) -> str | None:
    try:
        text = parsed["choices"][0]["text"]
    except (KeyError, IndexError, TypeError):
        return None
    return text if isinstance(text, str) else None


def _stream_exchange(
    chunks: Any, common: dict[str, Any], status: int
) -> tuple[Exchange, list[str]]:
    """A logged stream: parsed chunk objects, or the raw SSE lines as received."""
    if not isinstance(chunks, list):
        raise LineError("chunks", "must be a list of chat.completion.chunk objects")
    reader = StreamReader()
    lines: list[str] = []
    raw_lines = False
    for position, chunk in enumerate(chunks):
        if isinstance(chunk, dict):
            lines.append("data: " + _TEXT.encode(chunk))
            reader.chunk(chunk, 0.0)
        elif isinstance(chunk, str):
            if not chunk.strip():
                continue
            raw_lines = True
            text = chunk if chunk.startswith(("data:", ":", "event:", "id:")) else f"data: {chunk}"
            lines.append(text)
            reader.line(text, 0.0)
        else:
            raise LineError(f"chunks[{position}]", "must be a chunk object or a raw SSE line")
    if raw_lines:
        # Only a log of the raw lines can show that `[DONE]` never came.
        reader.close()
    exchange = reader.exchange(
        request_body=common["request_body"],
        started_at=common["started_at"],
        latency_ms=common["latency_ms"],
        http_status=status,
        headers=common["headers"],
    )
    if exchange.error is None and reader.generated_nothing():
        # As live: a 200 stream that never carried a choice is a failed call.
        exchange.message = None
        exchange.error = empty_response(status, "", EMPTY_STREAM)
    elif raw_lines and exchange.error is None and reader.cut_short():
        # As live: a fragment of a stream is a failed call (retried when the log shows it).
        exchange.error = ExchangeError(kind="connection", status=status, message=STREAM_CUT)
    # The log has no arrival times: no time to first token, and no per-line times.
    exchange.stream_events = None
    exchange.ttft_reasoning_ms = exchange.ttft_content_ms = exchange.ttft_tool_call_ms = None
    return exchange, lines


def _error_exchange(error: Any, common: dict[str, Any], streamed: bool) -> Exchange:
    """A logged failure: `{"status": N, "body": …}` (or a plain message)."""
    if isinstance(error, str):
        return Exchange(
            **common, streamed=streamed, error=ExchangeError(kind="other", message=one_line(error))
        )
    if not isinstance(error, dict):
        raise LineError("error", "must be an object with `status` and `body`")
    status = error.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise LineError("error.status", "must be an integer HTTP status")
    body = error.get("body")
    text = body if isinstance(body, str) else ("" if body is None else _TEXT.encode(body))
    kind = error.get("kind")
    if kind is not None and kind not in _ERROR_KINDS:
        raise LineError("error.kind", f"must be one of {', '.join(sorted(_ERROR_KINDS))}")
    message = error.get("message")
    if message is not None and not isinstance(message, str):
        raise LineError("error.message", "must be a string")
    if status is not None:
        failure = http_error(status, text)
        if kind is not None:
            failure.kind = kind
    else:
        failure = ExchangeError(
            kind=kind or "other",
            message=one_line(message or (error_message(text) if text else "call failed")),
            body=text or None,
        )
    return Exchange(
        **common,
        streamed=streamed,
        http_status=status,
        response_body=text or None,
        error=failure,
    )


def _sdk_error(detail: Any) -> ExchangeError:
    """The error K2VV logged as `str(exception)` of the openai SDK."""
    text = detail if isinstance(detail, str) else _TEXT.encode(detail)
    match = _SDK_STATUS_ERROR.match(text.strip())
    if match:
        return http_error(int(match.group(1)), match.group(2) or "")
    lowered = text.lower()
    kind: ErrorKind = "other"
    if "timed out" in lowered or "timeout" in lowered:
        kind = "timeout"
    elif "connection" in lowered:
        kind = "connection"
    return ExchangeError(kind=kind, message=one_line(text or "call failed"), body=text or None)

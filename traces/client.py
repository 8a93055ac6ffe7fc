"""The endpoint client: the only module that imports `openai`.

It sends a chat-completions body through the real SDK (so requests look exactly like any
OpenAI-compatible client's) but keeps the raw bytes: the response body, or every SSE line
with its arrival time. Interpretation happens elsewhere, on plain dicts.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx2
from pydantic import BaseModel, Field

from traces import strict_json
from traces.elapsed import elapsed_ms
from traces.errors import EndpointError, MissingKeyError
from traces.exchange import Exchange
from traces.exchange_reading import finish_stream, parse_body
from traces.http_errors import empty_response, http_error, invalid_response
from traces.model import ErrorKind, ExchangeError
from traces.one_line import one_line
from traces.redaction import Redactor, redact_url
from traces.responses import (
    KEPT_HEADERS,
    no_choices,
    upstream_of,
)
from traces.sse import StreamReader

if TYPE_CHECKING:
    import openai


class EndpointConfig(BaseModel):
    """Where and how to reach an OpenAI-compatible endpoint."""

    base_url: str = Field(description="Base URL ending in /v1 (or the provider's equivalent).")
    api_key_env: str | None = Field(
        default="OPENAI_API_KEY", description="Environment variable holding the key."
    )
    api_key: str | None = Field(
        default=None,
        description="A key given directly (only for local endpoints such as the simulator); "
        "never recorded.",
        repr=False,
    )
    extra_headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(
        default=600.0,
        description="Deadline of one request, seconds: the whole response, every chunk of a "
        "stream included, must have arrived by then (a host that trickles a chunk every 50 ms "
        "forever times out too).",
    )


def resolve_api_key(config: EndpointConfig) -> str | None:
    """The key for `config`, read from its environment variable; a one-line MissingKeyError
    (exit code 2) naming the variable when it is unset or empty."""
    if config.api_key is not None or not config.api_key_env:
        return config.api_key
    key = os.environ.get(config.api_key_env)
    if not key:
        raise MissingKeyError(
            f"environment variable {config.api_key_env} is not set "
            f"(it must hold the API key for {redact_url(config.base_url)})"
        )
    return key


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """The TLS context the SDK would build for each client, built once per process.

    Building one loads the whole CA bundle (~17 ms of CPU), and every run has its own client
    (its own connection pool): 64 runs spent a second of the event loop's time on it.
    """
    return httpx2.create_ssl_context()


class EndpointClient:
    """Sends chat-completion requests and returns raw `Exchange`s; never raises for HTTP errors."""

    def __init__(self, config: EndpointConfig) -> None:
        """Build the SDK client; fails with one line when the key variable is not set."""
        key = resolve_api_key(config)
        # The SDK is imported here, not with the module: it costs half a second of CPU, and
        # a command that fails on its input (a task file, a provider, a key) before it sends
        # anything would pay it for nothing. The other uses below all come after this one.
        import openai

        self.config = config
        # Whatever the host sends back is cleared of the key before anyone sees it.
        self.redactor = Redactor([key])
        # Retries are the harness's job: it records each failed attempt on the step.
        self._sdk = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=key or "none",
            max_retries=0,
            timeout=config.timeout_s,
            default_headers=config.extra_headers or None,
            http_client=openai.DefaultAsyncHttpxClient(verify=_ssl_context()),
        )

    async def close(self) -> None:
        """Release the connection pool."""
        await self._sdk.close()

    async def check_reachable(self) -> None:
        """Fail with one line when nothing answers HTTP at the base URL.

        Any HTTP answer counts as reachable (many providers 404 or 401 on GET /models), so
        this only catches what no run could survive: refused connections, DNS, timeouts.
        """
        import openai

        try:
            await self._sdk.models.list(timeout=min(self.config.timeout_s, 30.0))
        except openai.APIStatusError:
            return
        except openai.APITimeoutError:
            raise EndpointError(
                f"{redact_url(self.config.base_url)}: endpoint did not answer (timed out)"
            ) from None
        except openai.APIConnectionError as exc:
            cause = self.redactor.text(one_line(str(exc.__cause__ or exc)), tokens=True)
            raise EndpointError(
                f"{redact_url(self.config.base_url)}: cannot connect: {cause}"
            ) from None
        except Exception:  # the SDK failing to read the answer: still an answer
            # A host that answers GET /models with HTML or a malformed list is reachable; what
            # it does with chat requests is for the recording to find out and record.
            return

    async def complete(self, body: dict[str, Any]) -> Exchange:
        """Send one chat-completions request; stream when the body says `stream: true`."""
        streamed = bool(body.get("stream"))
        # The SDK deep-transforms `messages` and `tools` on every call: ~80 ms of CPU for a
        # 300-step conversation, which would cap one process at a dozen steps a second.
        # Fields in extra_body are sent verbatim and override the typed ones, so the wire body
        # is exactly `body` while the SDK transforms only an empty list.
        kwargs: dict[str, Any] = {
            "model": body.get("model", ""),
            "messages": [],
            "extra_body": {k: v for k, v in body.items() if k != "stream"},
        }
        if "stream" in body:
            kwargs["stream"] = body["stream"]
        started_at = datetime.now(UTC).replace(tzinfo=None)
        t0 = time.perf_counter()
        partial = _Partial(reader=StreamReader() if streamed else None)
        try:
            # The SDK's timeout bounds each read, and a chunk every 50 ms never trips it: the
            # deadline bounds the whole response.
            async with asyncio.timeout(self.config.timeout_s):
                exchange = await self._send(kwargs, body, streamed, started_at, t0, partial)
        except TimeoutError:
            exchange = _past_deadline(body, started_at, t0, partial, self.config.timeout_s)
        return self.redactor.exchange(exchange)

    async def _send(
        self,
        kwargs: dict[str, Any],
        body: dict[str, Any],
        streamed: bool,
        started_at: datetime,
        t0: float,
        partial: _Partial,
    ) -> Exchange:
        import openai

        try:
            async with self._sdk.chat.completions.with_streaming_response.create(
                **kwargs
            ) as response:
                status = partial.status = response.status_code
                headers = {k: v for k in KEPT_HEADERS if (v := response.headers.get(k)) is not None}
                partial.headers = headers
                if partial.reader is not None:
                    return await _read_stream(
                        response, partial.reader, body, started_at, t0, status, headers
                    )
                try:
                    raw = (await response.read()).decode("utf-8", errors="replace")
                except httpx2.TransportError as exc:
                    # The status line came, the body did not: the connection dropped or
                    # stalled mid-body. The host's fault, recorded like any failed call.
                    return _cut_short(body, started_at, t0, False, status, headers, exc)
                return parse_body(raw, body, started_at, t0, status, headers)
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            return _failed_call(exc, body, started_at, t0, streamed)

    async def complete_text(self, body: dict[str, Any]) -> Exchange:
        """Send one raw `/completions` request (a prompt rendered client-side), not streamed.

        The text comes back as the `content` of an assistant message, so it is read like any
        chat answer. A host that does not serve the route answers 404 or 405, kept as is.
        """
        kwargs: dict[str, Any] = {
            "model": body.get("model", ""),
            "prompt": "",
            "extra_body": {k: v for k, v in body.items() if k != "stream"},
        }
        started_at = datetime.now(UTC).replace(tzinfo=None)
        t0 = time.perf_counter()
        partial = _Partial()
        import openai

        try:
            async with (
                asyncio.timeout(self.config.timeout_s),
                self._sdk.completions.with_streaming_response.create(**kwargs) as response,
            ):
                status = partial.status = response.status_code
                headers = {k: v for k in KEPT_HEADERS if (v := response.headers.get(k)) is not None}
                partial.headers = headers
                raw = (await response.read()).decode("utf-8", errors="replace")
        except TimeoutError:
            deadline = self.config.timeout_s
            return self.redactor.exchange(_past_deadline(body, started_at, t0, partial, deadline))
        except httpx2.TransportError as exc:  # the body broke off after the status line
            cut = _cut_short(body, started_at, t0, False, partial.status, partial.headers, exc)
            return self.redactor.exchange(cut)
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            return self.redactor.exchange(_failed_call(exc, body, started_at, t0, False))
        exchange = Exchange(
            request_body=body,
            started_at=started_at,
            latency_ms=elapsed_ms(t0),
            streamed=False,
            http_status=status,
            headers=headers,
            response_body=raw,
        )
        if not raw.strip():
            exchange.error = empty_response(status, raw, "the body is empty")
            return self.redactor.exchange(exchange)
        try:
            parsed = strict_json.loads(raw)
            if no_choices(parsed):
                exchange.error = empty_response(status, raw, "the completion has no choice")
                return self.redactor.exchange(exchange)
            choice = parsed["choices"][0]
            exchange.message = {"role": "assistant", "content": str(choice["text"])}
            exchange.finish_reason_raw = choice.get("finish_reason")
            exchange.usage_raw = parsed.get("usage")
            exchange.upstream_provider = upstream_of(parsed)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            exchange.error = invalid_response(status, raw, exc)
        return self.redactor.exchange(exchange)


@dataclass
class _Partial:
    """What a response had delivered so far, for a call that hits its deadline."""

    reader: StreamReader | None = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _past_deadline(
    body: dict[str, Any], started_at: datetime, t0: float, partial: _Partial, deadline_s: float
) -> Exchange:
    """The exchange of a call whose response was not complete by its deadline: a timeout,
    with the stream lines that did arrive (they show what the host was doing)."""
    latency_ms = elapsed_ms(t0)
    if partial.reader is not None:
        exchange = partial.reader.exchange(
            request_body=body,
            started_at=started_at,
            latency_ms=latency_ms,
            http_status=partial.status,
            headers=partial.headers,
        )
    else:
        exchange = Exchange(
            request_body=body,
            started_at=started_at,
            latency_ms=latency_ms,
            streamed=False,
            http_status=partial.status,
            headers=partial.headers,
        )
    exchange.error = ExchangeError(
        kind="timeout",
        status=partial.status,
        message=f"no complete response within the {deadline_s:g} s deadline",
    )
    return exchange


def _failed_call(
    exc: openai.APIStatusError | openai.APIConnectionError,
    body: dict[str, Any],
    started_at: datetime,
    t0: float,
    streamed: bool,
) -> Exchange:
    """The exchange of a call the SDK raised for: an HTTP error status, a timeout, or a
    connection that could not be made."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        text = exc.response.text
        return Exchange(
            request_body=body,
            started_at=started_at,
            latency_ms=elapsed_ms(t0),
            streamed=streamed,
            http_status=exc.status_code,
            headers={k: v for k in KEPT_HEADERS if (v := exc.response.headers.get(k))},
            response_body=text,
            error=http_error(exc.status_code, text),
        )
    if isinstance(exc, openai.APITimeoutError):  # a subclass of APIConnectionError
        return _transport_failure(body, started_at, t0, streamed, "timeout", "request timed out")
    cause = exc.__cause__ or exc
    return _transport_failure(
        body, started_at, t0, streamed, "connection", f"cannot connect: {cause}"
    )


def _transport_failure(
    body: dict[str, Any],
    started_at: datetime,
    t0: float,
    streamed: bool,
    kind: ErrorKind,
    message: str,
) -> Exchange:
    return Exchange(
        request_body=body,
        started_at=started_at,
        latency_ms=elapsed_ms(t0),
        streamed=streamed,
        error=ExchangeError(kind=kind, message=one_line(message)),
    )


def _lost(status: int | None, exc: httpx2.TransportError) -> ExchangeError:
    """The error of a response whose body broke off: a read timeout, or the connection lost."""
    if isinstance(exc, httpx2.TimeoutException):
        return ExchangeError(kind="timeout", status=status, message="response timed out mid-body")
    cause = one_line(str(exc) or type(exc).__name__)
    return ExchangeError(kind="connection", status=status, message=f"connection lost: {cause}")


def _cut_short(
    body: dict[str, Any],
    started_at: datetime,
    t0: float,
    streamed: bool,
    status: int | None,
    headers: dict[str, str],
    exc: httpx2.TransportError,
) -> Exchange:
    return Exchange(
        request_body=body,
        started_at=started_at,
        latency_ms=elapsed_ms(t0),
        streamed=streamed,
        http_status=status,
        headers=headers,
        error=_lost(status, exc),
    )


async def _read_stream(
    response: Any,
    reader: StreamReader,
    body: dict[str, Any],
    started_at: datetime,
    t0: float,
    status: int,
    headers: dict[str, str],
) -> Exchange:
    lost: httpx2.TransportError | None = None
    try:
        async for line in response.iter_lines():
            if not line:
                continue  # the blank separator between events carries nothing to keep
            reader.line(line, elapsed_ms(t0))
    except httpx2.TransportError as exc:
        lost = exc  # what arrived before the cut is kept: the events show where it broke
    return finish_stream(
        reader, body, started_at, t0, status, headers, lost=_lost_error(status, lost)
    )


def _lost_error(status: int | None, exc: httpx2.TransportError | None) -> ExchangeError | None:
    return None if exc is None else _lost(status, exc)

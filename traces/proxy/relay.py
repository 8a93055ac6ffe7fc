"""The proxy's ASGI application: forward each request upstream, relay the answer unchanged.

Raw ASGI, as the simulator (`traces.sim.app`): no framework between the socket and the relay.
The answer goes back as it came: the upstream's status, its headers but the hop-by-hop ones,
and its body bytes as each piece arrives (an SSE stream is never buffered). The upstream is
asked for an uncompressed body (`Accept-Encoding: identity`), so the bytes relayed are the
bytes recorded. Which upstream a request goes to is `routing`'s choice (a `/p/NAME` prefix,
the model, or the default). Chat completions, text completions and Responses API exchanges
are captured on the way (`capture`) and recorded once the answer has ended (`recording`);
`/v1/models` passes through (without a `/p/NAME` prefix, in front of several upstreams, it
lists every upstream's models: a client picks its model from that one list); any other path
passes through and is logged (`paths`).

A client that hangs up before the answer ended cancels the upstream request (its connection
is closed) and the step is recorded as cancelled. An upstream that cannot be reached is
answered with a 502 in the OpenAI error shape; one that breaks off mid-body makes the proxy
drop the client's connection the same way, so the client sees what it would have seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx2

from traces import strict_json
from traces.exchange import Exchange
from traces.proxy.capture import Capture, start_clock
from traces.proxy.paths import RECORDED, Kind, kind_of
from traces.proxy.recording import ProxyRecorder, Ticket
from traces.proxy.routing import Route, RouteError, Routes
from traces.proxy.sending import TRANSPORT_ERRORS, Sender
from traces.proxy.upstream import Upstream
from traces.redaction import Redactor, redact_request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

RUN_HEADER = b"x-traces-run"
"""A client's explicit grouping: requests with the same value are one run."""
TOKEN_HEADER = b"x-traces-token"
"""Where a client may send the proxy's token (else as its `Authorization: Bearer` key)."""

_DROPPED_REQUEST = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"accept-encoding",
        RUN_HEADER,
        TOKEN_HEADER,
    }
)
"""Request headers not forwarded: hop-by-hop ones, the body's length (recomputed), the
encoding (identity is asked for) and the proxy's own."""
_DROPPED_RESPONSE = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"proxy-authenticate", b"upgrade"}
)
"""Response headers not relayed: hop-by-hop ones (the proxy's server frames the body)."""


def _bearer(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def _read_body(receive: Receive) -> bytes | None:
    """The request body; None when the client left before sending it all."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _hung_up(receive: Receive) -> None:
    """Return once the client has disconnected (or the response is complete)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _forwarded(
    headers: list[tuple[bytes, bytes]], authorization: bytes, upstream: Upstream
) -> list[tuple[bytes, bytes]]:
    """The client's headers as `upstream` gets them: hop-by-hop ones dropped, its own key
    (else the client's), its extra headers, an uncompressed body asked for."""
    forwarded = [(k, v) for k, v in headers if k not in _DROPPED_REQUEST and k != b"authorization"]
    if upstream.key is not None:
        forwarded.append((b"authorization", f"Bearer {upstream.key}".encode()))
    elif authorization:
        forwarded.append((b"authorization", authorization))
    extra = upstream.extra_headers
    forwarded.extend((k.lower().encode(), v.encode()) for k, v in extra.items())
    forwarded.append((b"accept-encoding", b"identity"))
    return forwarded


def _models_of(answer: httpx2.Response | Exception) -> list[Any] | None:
    """The `data` list of a successful `/v1/models` answer, else None."""
    if isinstance(answer, Exception) or answer.status_code != 200:
        return None
    try:
        data = json.loads(answer.content).get("data")
    except (ValueError, AttributeError):
        return None
    return data if isinstance(data, list) else None


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _json_error(send: Send, status: int, message: str, kind: str) -> None:
    body = json.dumps({"error": {"message": message, "type": kind, "code": kind}}).encode()
    await _answer(send, status, body)


class ProxyApp:
    """ASGI callable relaying to the upstreams of its `Routes` and recording through a
    `ProxyRecorder`."""

    def __init__(
        self,
        routes: Routes | Upstream,
        recording: ProxyRecorder,
        *,
        token: str | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        """Relay as `routes` says (one `Upstream`: everything to it); with `token`, refuse
        every request that does not carry it."""
        self.routes = routes if isinstance(routes, Routes) else Routes([routes])
        self.recording = recording
        self.token = token
        self.log = log or (lambda line: None)
        self.sender = Sender(self.routes.default.timeout_s)
        self.client = self.sender.client
        self._redactors: dict[str | None, Redactor] = {}
        self._redactors_version = 0

    async def aclose(self) -> None:
        """Release the upstream connections."""
        await self.sender.aclose()

    def redactor(self, client_key: str | None) -> Redactor:
        """Clears every key this exchange involved from what is recorded (one per client
        key: building one compiles its patterns)."""
        if self._redactors_version != self.routes.version:
            # An upstream was added (a profile first named by a prefix): its key joins.
            self._redactors.clear()
            self._redactors_version = self.routes.version
        found = self._redactors.get(client_key)
        if found is None:
            if len(self._redactors) > 64:
                self._redactors.clear()
            found = Redactor([*self.routes.keys(), client_key, self.token])
            self._redactors[client_key] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        authorization = next((v for k, v in headers if k == b"authorization"), b"")
        client_key = _bearer(authorization.decode("latin-1"))
        if self.token is not None:
            sent = next((v for k, v in headers if k == TOKEN_HEADER), b"")
            token = self.token.encode()
            # Compared as bytes: a str with characters beyond ASCII cannot be compared so.
            if hmac.compare_digest((client_key or "").encode("latin-1"), token):
                client_key = None  # the key was the proxy's token: never forwarded
                authorization = b""
            elif not hmac.compare_digest(sent, token):
                await _json_error(
                    send, 401, "traces proxy: missing or wrong proxy token", "proxy_token"
                )
                return
        body = await _read_body(receive)
        if body is None:
            return
        method: str = scope["method"]
        path: str = scope["path"]
        # The body is parsed before it goes upstream only where its model may choose the host;
        # where it is recorded, once it has gone (`_Step`): a long conversation takes
        # milliseconds to parse, time the upstream works anyway.
        by_model = bool(self.routes.by_model) and method == "POST"
        parsed = _json_object(body) if by_model else None
        model = parsed.get("model") if parsed is not None else None
        try:
            route = self.routes.route(path, model if isinstance(model, str) else None)
        except RouteError as refused:
            self.log(f"{method} {path}: refused: {refused.message}")
            await _json_error(send, refused.status, refused.message, "proxy_route")
            return
        upstream = route.upstream
        listing = method == "GET" and route.path.rstrip("/") == "/v1/models"
        if listing and not route.prefixed and len(self.routes.configured) > 1:
            await self._all_models(send, headers, authorization)
            return
        forwarded = _forwarded(headers, authorization, upstream)
        url = upstream.url_for(route.path, scope.get("query_string", b""))
        step = self._step(method, path, route, parsed, body, headers, client_key)
        outgoing = _Outgoing(method, url, forwarded, body, upstream, step)
        try:
            ended = await self._exchange(outgoing, receive, send)
        except asyncio.CancelledError:
            # The proxy stops before the answer ended: what arrived is recorded all the same
            # (now: the proxy is about to record what is left and stop).
            capture = step.capture() if step is not None else None
            if step is not None and capture is not None:
                ticket = step.ticket()
                if ticket is not None:
                    capture.stop()
                    self.recording.finish(ticket, capture.cancelled())
            raise
        if step is not None and ended is not None:
            # Read and stored a moment later: the client has its answer, and its next request
            # goes upstream first.
            self.recording.later(step.finisher(ended))

    async def _all_models(
        self, send: Send, headers: list[tuple[bytes, bytes]], authorization: bytes
    ) -> None:
        """Every `--upstream`'s `/v1/models` in one list, each id once (the first upstream
        listing it first); an upstream that fails is left out and logged, and when all fail
        the client gets the first one's answer as it came."""

        async def listed(upstream: Upstream) -> httpx2.Response | Exception:
            try:
                return await self.client.get(
                    upstream.url_for("/v1/models", b""),
                    headers=_forwarded(headers, authorization, upstream),
                )
            except httpx2.HTTPError as exc:
                return exc

        upstreams = self.routes.configured
        answers = await asyncio.gather(*(listed(u) for u in upstreams))
        models: list[Any] = []
        seen: set[str] = set()
        for upstream, answer in zip(upstreams, answers, strict=True):
            data = _models_of(answer)
            if data is None:
                why = answer if isinstance(answer, Exception) else f"HTTP {answer.status_code}"
                self.log(f"GET /v1/models: {upstream.label} left out of the list ({why})")
                continue
            for model in data:
                key = str(model.get("id")) if isinstance(model, dict) else json.dumps(model)
                if key not in seen:
                    seen.add(key)
                    models.append(model)
        if not models and not any(_models_of(a) is not None for a in answers):
            first = answers[0]
            if isinstance(first, Exception):
                shown = upstreams[0].shown_url
                message = f"traces proxy: upstream {shown} unreachable: {first}"
                await _json_error(send, 502, message, "proxy_upstream")
            else:
                await _answer(send, first.status_code, first.content)
            return
        await _answer(send, 200, json.dumps({"object": "list", "data": models}).encode())

    def _step(
        self,
        method: str,
        path: str,
        route: Route,
        parsed: dict[str, Any] | None,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        client_key: str | None,
    ) -> _Step | None:
        """The step a request of a recorded kind makes, its clock started now (None, and a
        log line, for a path that is not recorded)."""
        kind = kind_of(method, route.path)
        if kind not in RECORDED:
            if kind != "models":
                self.log(f"{method} {path}: relayed, not recorded")
            return None
        header = next((v for k, v in headers if k == RUN_HEADER), None)
        agent = next((v for k, v in headers if k == b"user-agent"), None)
        return _Step(
            self,
            _Request(
                method=method,
                path=path,
                kind=kind,
                route=route,
                body=body,
                parsed=parsed,
                client_key=client_key,
                explicit=header.decode("latin-1") if header else route.group,
                agent=agent.decode("latin-1") if agent else None,
            ),
        )

    async def _exchange(
        self, outgoing: _Outgoing, receive: Receive, send: Send
    ) -> Callable[[], Exchange] | None:
        """Relay while watching for the client hanging up; how to read the captured
        exchange, if any."""
        relay = asyncio.ensure_future(self._relay(outgoing, send))
        watch = asyncio.ensure_future(_hung_up(receive))
        try:
            await asyncio.wait((relay, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not relay.done():
                relay.cancel()  # the client left (or the proxy stops): so does the upstream
                with contextlib.suppress(asyncio.CancelledError):
                    await relay
            watch.cancel()
        if relay.cancelled():
            capture = outgoing.step.capture() if outgoing.step is not None else None
            if capture is None:
                return None
            capture.stop()
            return capture.cancelled
        return relay.result()

    async def _relay(self, outgoing: _Outgoing, send: Send) -> Callable[[], Exchange] | None:
        step = outgoing.step
        try:
            answer = await self.sender.send(
                outgoing.method,
                outgoing.url,
                outgoing.headers,
                outgoing.body,
                sent=step.ticket if step is not None else None,
            )
        except TRANSPORT_ERRORS as exc:
            shown = outgoing.upstream.shown_url
            await _json_error(
                send, 502, f"traces proxy: upstream {shown} unreachable: {exc}", "proxy_upstream"
            )
            return _lost(step, exc)
        try:
            raw_headers = answer.headers
            capture = step.capture() if step is not None else None
            if capture is not None:
                capture.answered(
                    answer.status_code,
                    {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers},
                )
            await send(
                {
                    "type": "http.response.start",
                    "status": answer.status_code,
                    "headers": [
                        (k, v) for k, v in raw_headers if k.lower() not in _DROPPED_RESPONSE
                    ],
                }
            )
            try:
                # Each piece is all that one read from the upstream brought (with plain HTTP:
                # several SSE events at once under load), relayed with one write; it is only
                # kept for the recording, read once the answer has ended.
                async for piece in answer.pieces():
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                    if capture is not None:
                        capture.data(piece)
            except TRANSPORT_ERRORS as exc:
                # Returning mid-body makes the server drop the client's connection: the client
                # sees the cut it would have seen from the upstream.
                return _lost(step, exc)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            if capture is None:
                return None
            capture.stop()
            return capture.ended
        finally:
            await answer.aclose()


def _lost(step: _Step | None, exc: BaseException) -> Callable[[], Exchange] | None:
    capture = step.capture() if step is not None else None
    if capture is None:
        return None
    capture.stop()
    return lambda: capture.lost(exc)


@dataclass(frozen=True)
class _Request:
    """What the step of a recorded request is made of."""

    method: str
    path: str
    kind: Kind
    route: Route
    body: bytes
    parsed: dict[str, Any] | None
    """The body already parsed (to route by model), else None: parsed when needed."""
    client_key: str | None
    explicit: str | None
    agent: str | None


class _Step:
    """The step a recorded request makes. Its clock starts when it is made (the request is
    about to go upstream); the body is read (`capture`) and the step begun (`ticket`) once
    the request is on its way, or when the relay first needs them."""

    def __init__(self, app: ProxyApp, request: _Request) -> None:
        self.app = app
        self.request = request
        self.clock = start_clock()
        self._captured = False
        self._capture: Capture | None = None
        self._begun = False
        self._ticket: Ticket | None = None

    def capture(self) -> Capture | None:
        """What is kept of the exchange (None, and a log line: the body is not a JSON
        object, so it is relayed and not recorded)."""
        if not self._captured:
            self._captured = True
            request = self.request
            parsed = request.parsed
            if parsed is None and request.method == "POST":
                parsed = _json_object(request.body)
            if parsed is None:
                self.app.log(
                    f"{request.method} {request.path}: the body is not a JSON object; "
                    "relayed, not recorded"
                )
                return None
            redactor = self.app.redactor(request.client_key)
            cleaned = _without_secrets(parsed, request.body, redactor)
            self._capture = Capture(cleaned, redactor, request.kind, clock=self.clock)
        return self._capture

    def ticket(self) -> Ticket | None:
        """The step's ticket (None: the request makes no step)."""
        if not self._begun:
            self._begun = True
            capture = self.capture()
            if capture is None:
                return None
            request = self.request
            self._ticket = self.app.recording.start(
                capture.body,
                request.explicit,
                request.agent,
                kind=request.kind,
                route=request.route,
            )
            if self._ticket is not None:
                self._ticket.responses = capture.responses
        return self._ticket

    def finisher(self, ended: Callable[[], Exchange]) -> Callable[[], None]:
        """The work that reads the ended exchange and stores the step."""

        def finish() -> None:
            ticket = self.ticket()
            if ticket is not None:
                self.app.recording.finish(ticket, ended())

        return finish


@dataclass(frozen=True)
class _Outgoing:
    """A request as it goes upstream."""

    method: str
    url: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    upstream: Upstream
    step: _Step | None


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The request body read as the recorder can store it (strict JSON: no NaN, no nesting
    beyond what it writes back); None when it is not one object."""
    try:
        parsed = strict_json.loads(body.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        return None
    return parsed if isinstance(parsed, dict) else None


def _without_secrets(parsed: dict[str, Any], raw: bytes, redactor: Redactor) -> dict[str, Any]:
    """The request as it is recorded: credential fields dropped (as an import drops them),
    and any key in use redacted wherever it occurs (a user who pasted it into a message).
    The raw text is scanned first, so the common request is not walked value by value."""
    cleaned = redact_request(parsed)
    text = raw.decode("utf-8", errors="replace")
    if redactor and redactor.text(text) != text:
        cleaned = dict(redactor.value(cleaned))
    return cleaned

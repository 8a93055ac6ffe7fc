"""The simulator's raw ASGI application (served by uvicorn; no framework in between).

Routes: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions` (streaming and
not) and `POST /v1/completions` (raw prompts, not streamed). Every request is decided from
its own body (see `responder`); the only state is a request counter for the rate-limit
headers, an attempt counter per request (transient faults) and the prefix cache, which only
changes the cached-token count of `usage`. Chat responses carry `x-sim-dialect` and
`x-sim-faults` (the faults injected into that response, comma-separated); a response a fault
cuts short is sent chunked and the connection dropped mid-body.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from traces.sim import wire
from traces.sim.completions import complete, parse_completion_request
from traces.sim.config import SimConfig
from traces.sim.faults import AttemptCounter
from traces.sim.faults.base import TRICKLE_S
from traces.sim.prefix_cache import PrefixCache
from traces.sim.request import RequestError, parse_chat_request
from traces.sim.responder import answer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

RATE_LIMIT_REQUESTS = 1_000_000
"""Advertised requests per window: high enough that no client ever backs off from it."""
_RATE_WINDOW_S = 60.0
_MODEL_CREATED = 1_763_596_800  # fixed, so /v1/models is byte-stable across runs
_CHAT_PATH = "/v1/chat/completions"
_COMPLETIONS_PATH = "/v1/completions"
_MODELS_PATH = "/v1/models"


class _Disconnected(Exception):
    """The client went away before its request body arrived."""


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _disconnected_within(receive: Receive, seconds: float) -> bool:
    """Wait up to `seconds` for the client to hang up; True if it did."""
    try:
        message = await asyncio.wait_for(receive(), seconds)
    except TimeoutError:
        return False
    return bool(message["type"] == "http.disconnect")


def _encoded(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in headers]


def _merge(
    base: list[tuple[bytes, bytes]], override: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """`base` with any header named in `override` replaced by it (a 429 says 0 remaining)."""
    names = {name for name, _ in override}
    return [item for item in base if item[0] not in names] + override


class SimApp:
    """ASGI callable serving one `SimConfig`."""

    def __init__(self, config: SimConfig) -> None:
        """Serve `config`; requests share only the counters and the prefix cache."""
        self.config = config
        self._window_start = time.monotonic()
        self._window_count = 0
        self._attempts = AttemptCounter()  # so retries of a request roll transient faults again
        self._cache = PrefixCache()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method = scope["method"]
        path = scope["path"].rstrip("/") or "/"
        try:
            if path == _CHAT_PATH:
                if method != "POST":
                    await self._method_not_allowed(send, method, path)
                    return
                await self._chat(scope, receive, send)
            elif path == _COMPLETIONS_PATH:
                if method != "POST":
                    await self._method_not_allowed(send, method, path)
                    return
                await self._completions(receive, send)
            elif path == _MODELS_PATH and method == "GET":
                await self._json(send, 200, wire.models(self.config.model, _MODEL_CREATED))
            elif path.startswith(_MODELS_PATH + "/") and method == "GET":
                await self._model(send, path[len(_MODELS_PATH) + 1 :])
            else:
                body = wire.error(f"Unknown request URL: {method} {path}.", code="unknown_url")
                await self._json(send, 404, body)
        except _Disconnected:
            return

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            request = parse_chat_request(await _read_body(receive))
        except RequestError as problem:
            body = wire.error(problem.message, param=problem.param, code=problem.code)
            await self._json(send, 400, body, self._sim_headers([]))
            return
        if self.config.latency_ms > 0:
            await asyncio.sleep(self.config.latency_ms / 1000)
        authorization = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), ""
        )
        outcome = answer(request, self.config, self._attempts, self._cache, authorization)
        if outcome.stall_s > 0 and await _disconnected_within(receive, outcome.stall_s):
            return  # the client timed out and left; nobody is there to answer
        headers = _merge(self._headers(), _encoded(outcome.headers))
        headers.extend(self._sim_headers(outcome.faults))
        if outcome.events is None and outcome.complete:
            await self._send(send, outcome.status, outcome.body, outcome.content_type, headers)
            return
        if outcome.events is not None:
            headers.insert(0, (b"cache-control", b"no-cache"))
        await send(
            {
                "type": "http.response.start",
                "status": outcome.status,
                # No content-length: the body is chunked, so a cut one is seen as cut.
                "headers": [(b"content-type", outcome.content_type.encode()), *headers],
            }
        )
        # One write per event, as a real server flushes each SSE event as it is generated.
        pieces = [outcome.body] if outcome.events is None else outcome.events
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        if outcome.trickle is not None:
            # A response that never ends: one more piece every TRICKLE_S while anyone listens.
            while not await _disconnected_within(receive, TRICKLE_S):
                await send(
                    {"type": "http.response.body", "body": outcome.trickle, "more_body": True}
                )
            return
        if not outcome.complete:
            # Returning mid-body makes the server drop the connection, as a crashed upstream
            # or an impatient proxy does (see server._CutResponses).
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _completions(self, receive: Receive, send: Send) -> None:
        try:
            request = parse_completion_request(await _read_body(receive))
        except RequestError as problem:
            body = wire.error(problem.message, param=problem.param, code=problem.code)
            await self._json(send, 400, body, self._sim_headers([]))
            return
        if self.config.latency_ms > 0:
            await asyncio.sleep(self.config.latency_ms / 1000)
        body = complete(request, self.config)
        await self._json(send, 200, body, [*self._headers(), *self._sim_headers([])])

    def _sim_headers(self, faults: list[str]) -> list[tuple[bytes, bytes]]:
        # Tests and checks compare what they detect with what was injected.
        return [
            (b"x-sim-dialect", self.config.dialect.encode()),
            (b"x-sim-faults", ",".join(faults).encode()),
        ]

    async def _model(self, send: Send, model_id: str) -> None:
        if model_id == self.config.model:
            await self._json(send, 200, wire.model_object(model_id, _MODEL_CREATED))
            return
        message = f"The model '{model_id}' does not exist or you do not have access to it."
        await self._json(send, 404, wire.error(message, code="model_not_found"))

    async def _method_not_allowed(self, send: Send, method: str, path: str) -> None:
        body = wire.error(f"Method {method} is not allowed for {path}.", code="method_not_allowed")
        await self._json(send, 405, body, [(b"allow", b"POST")])

    def _headers(self) -> list[tuple[bytes, bytes]]:
        now = time.monotonic()
        if now - self._window_start >= _RATE_WINDOW_S:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        remaining = max(0, RATE_LIMIT_REQUESTS - self._window_count)
        reset = max(0.0, _RATE_WINDOW_S - (now - self._window_start))
        return [
            (b"x-request-id", ("req_" + uuid.uuid4().hex).encode()),
            (b"x-ratelimit-limit-requests", str(RATE_LIMIT_REQUESTS).encode()),
            (b"x-ratelimit-remaining-requests", str(remaining).encode()),
            (b"x-ratelimit-reset-requests", f"{reset:.3f}s".encode()),
        ]

    @classmethod
    async def _json(
        cls,
        send: Send,
        status: int,
        body: dict[str, Any],
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        await cls._send(send, status, wire.dumps(body), "application/json", headers or [])

    @staticmethod
    async def _send(
        send: Send,
        status: int,
        payload: bytes,
        content_type: str,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(payload)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        # Served with lifespan="off" normally; answer the protocol anyway if a server asks.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(config: SimConfig | None = None) -> SimApp:
    """The ASGI app for `config` (defaults when None)."""
    return SimApp(config or SimConfig())

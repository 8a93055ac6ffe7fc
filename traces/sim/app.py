"""The simulator's raw ASGI application (served by uvicorn; no framework in between).

Routes: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions` (streaming and
not). Every request is decided from its own body; the only state is a request counter for
the rate-limit headers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from traces.sim import wire
from traces.sim.config import SimConfig
from traces.sim.policy import decide
from traces.sim.request import ChatRequest, RequestError, parse_chat_request
from traces.sim.template import render_segments
from traces.sim.tokenizer import count_tokens_cached

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

RATE_LIMIT_REQUESTS = 1_000_000
"""Advertised requests per window: high enough that no client ever backs off from it."""
_RATE_WINDOW_S = 60.0
_MODEL_CREATED = 1_763_596_800  # fixed, so /v1/models is byte-stable across runs
_CHAT_PATH = "/v1/chat/completions"
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


class SimApp:
    """ASGI callable serving one `SimConfig`."""

    def __init__(self, config: SimConfig) -> None:
        """Serve `config`; nothing is shared between requests except the rate-limit counter."""
        self.config = config
        self._window_start = time.monotonic()
        self._window_count = 0

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
                await self._chat(receive, send)
            elif path == _MODELS_PATH and method == "GET":
                await self._json(send, 200, wire.models(self.config.model, _MODEL_CREATED))
            elif path.startswith(_MODELS_PATH + "/") and method == "GET":
                await self._model(send, path[len(_MODELS_PATH) + 1 :])
            else:
                body = wire.error(f"Unknown request URL: {method} {path}.", code="unknown_url")
                await self._json(send, 404, body)
        except _Disconnected:
            return

    async def _chat(self, receive: Receive, send: Send) -> None:
        try:
            request = parse_chat_request(await _read_body(receive))
        except RequestError as problem:
            body = wire.error(problem.message, param=problem.param, code=problem.code)
            await self._json(send, 400, body)
            return
        if self.config.latency_ms > 0:
            await asyncio.sleep(self.config.latency_ms / 1000)
        await self._complete(request, send)

    async def _complete(self, request: ChatRequest, send: Send) -> None:
        field = self.config.reasoning_field
        seed = request.seed if request.seed is not None else self.config.seed
        segments = render_segments(request.messages, request.tools, field)
        prompt_tokens = sum(count_tokens_cached(segment) for segment in segments)
        decision = decide(
            request.messages, request.tools, seed=seed, tool_choice=request.tool_choice
        )
        usage = wire.usage(decision, prompt_tokens)
        completion_id = "chatcmpl-" + uuid.uuid4().hex
        created = int(time.time())
        headers = self._headers()
        if not request.stream:
            body = wire.completion(
                decision,
                completion_id=completion_id,
                created=created,
                model=request.model,
                field=field,
                usage_body=usage,
            )
            await self._json(send, 200, body, headers)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    *headers,
                ],
            }
        )
        events = wire.stream_events(
            decision,
            completion_id=completion_id,
            created=created,
            model=request.model,
            field=field,
            chunk_chars=self.config.chunk_chars,
            usage_body=usage if request.include_usage else None,
        )
        # One write per event, as a real server flushes each SSE event as it is generated.
        for event in events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

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

    @staticmethod
    async def _json(
        send: Send,
        status: int,
        body: dict[str, Any],
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        payload = wire.dumps(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    *(headers or []),
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

"""What the simulator does not serve, served in front of it for the proxy's tests: the
Responses API (`POST /v1/responses`, whole and streamed, with function calls when tools are
declared) and streamed text completions. Everything else goes to the simulator itself.

Answers are deterministic functions of the request, shaped as OpenAI's, and carry the
client's `Authorization` back in a header and in the text when the request asks for it
(`metadata.echo = "auth"`), as a careless host would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from proxy_setup import Tap, tapped_sim

from traces.sim.config import SimConfig
from traces.sim.server import SimServer


def _auth(scope: Any) -> str:
    return next((v.decode() for k, v in scope["headers"] if k == b"authorization"), "")


def _response(body: dict[str, Any], number: int, auth: str) -> dict[str, Any]:
    given = body.get("input")
    items = given if isinstance(given, list) else [given]
    echo = isinstance(body.get("metadata"), dict) and body["metadata"].get("echo") == "auth"
    answered_call = any(
        isinstance(i, dict) and i.get("type") == "function_call_output" for i in items
    )
    tools = body.get("tools") or []
    output: list[dict[str, Any]]
    if tools and not answered_call:
        output = [
            {
                "type": "function_call",
                "id": f"fc_{number}",
                "call_id": f"call_{number}",
                "name": tools[0]["name"],
                "arguments": json.dumps({"word": "cat"}),
                "status": "completed",
            }
        ]
    else:
        text = f"Read {len(items)} items." + (f" You sent {auth}." if echo else "")
        output = [
            {
                "type": "message",
                "id": f"msg_{number}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]
    return {
        "id": f"resp_{number:04d}",
        "object": "response",
        "created_at": 1_763_596_800,
        "status": "completed",
        "model": body.get("model", "m"),
        "output": output,
        "usage": {
            "input_tokens": 10 * len(items),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 7,
            "output_tokens_details": {"reasoning_tokens": 2},
            "total_tokens": 10 * len(items) + 7,
        },
    }


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


class WireExtras:
    """ASGI app: `/v1/responses` and streamed `/v1/completions` here, the rest to `inner`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.count = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.inner(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)

        async def replay() -> Any:
            return {"type": "http.request", "body": raw, "more_body": False}

        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}  # not JSON: the simulator answers it (a 400)
        if scope["path"] == "/v1/responses":
            await self._responses(body, _auth(scope), send)
        elif scope["path"] == "/v1/completions" and body.get("stream") is True:
            await self._stream_completion(body, send)
        else:
            await self.inner(scope, replay, send)

    async def _start(self, send: Any, status: int, content_type: bytes) -> None:
        headers = [(b"content-type", content_type), (b"x-request-id", f"req-{self.count}".encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})

    async def _responses(self, body: dict[str, Any], auth: str, send: Any) -> None:
        self.count += 1
        if "input" not in body:
            error = {
                "error": {
                    "message": "Missing required parameter: 'input'.",
                    "type": "invalid_request_error",
                }
            }
            await self._start(send, 400, b"application/json")
            await send({"type": "http.response.body", "body": json.dumps(error).encode()})
            return
        response = _response(body, self.count, auth)
        if body.get("stream") is not True:
            await self._start(send, 200, b"application/json")
            await send({"type": "http.response.body", "body": json.dumps(response).encode()})
            return
        await self._start(send, 200, b"text/event-stream")
        created = {**response, "status": "in_progress", "output": [], "usage": None}
        events = [_sse("response.created", {"response": created})]
        for item in response["output"]:
            for part in item.get("content", []):
                for word in part["text"].split(" "):
                    events.append(_sse("response.output_text.delta", {"delta": word + " "}))
        events.append(_sse("response.completed", {"response": response}))
        for event in events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream_completion(self, body: dict[str, Any], send: Any) -> None:
        self.count += 1
        await self._start(send, 200, b"text/event-stream")
        words = ["Once", " upon", " a", " time."]
        for number, word in enumerate(words):
            last = number == len(words) - 1
            chunk = {
                "id": f"cmpl-{self.count}",
                "object": "text_completion",
                "model": body.get("model", "m"),
                "choices": [{"index": 0, "text": word, "finish_reason": "stop" if last else None}],
            }
            if last:
                chunk["usage"] = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
            line = f"data: {json.dumps(chunk)}\n\n".encode()
            await send({"type": "http.response.body", "body": line, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@contextlib.contextmanager
def wire_sim(monkeypatch: pytest.MonkeyPatch, config: SimConfig) -> Iterator[tuple[SimServer, Tap]]:
    """A simulator with the extras in front, every answer tapped."""
    with tapped_sim(monkeypatch, config, WireExtras) as tapped:
        yield tapped

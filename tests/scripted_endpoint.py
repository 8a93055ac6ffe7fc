"""A chat-completions endpoint that replays a fixed script, for model mistakes the simulator's
well-behaved policy never makes (traversal attempts, broken JSON, unknown tools, HTTP errors).

It is a real HTTP server on loopback, so the harness still goes through the real `openai`
client; it also keeps every request body it received, to compare with what was recorded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, dict[str, Any]]


def tool_turn(*calls: tuple[str, str], reasoning: str = "thinking") -> Reply:
    """A 200 response calling tools given as (name, raw arguments string)."""
    return 200, {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "scripted",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": reasoning,
                    "tool_calls": [
                        {
                            "id": f"call_{i}",
                            "type": "function",
                            "function": {"name": name, "arguments": args},
                        }
                        for i, (name, args) in enumerate(calls)
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def answer(text: str, finish_reason: str = "stop") -> Reply:
    """A 200 response with a final answer."""
    return 200, {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "created": 0,
        "model": "scripted",
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": text, "reasoning_content": "done"},
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def error(status: int, message: str) -> Reply:
    """An OpenAI-shaped error response."""
    return status, {"error": {"message": message, "type": "error", "code": None}}


class ScriptedEndpoint:
    """Serves `replies` in order (the last one repeats) and remembers every request body;
    with `respond`, each reply is what it returns for the request body instead."""

    def __init__(
        self, replies: list[Reply], respond: Callable[[dict[str, Any]], Reply] | None = None
    ) -> None:
        self.replies = list(replies)
        self.respond = respond
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.base_url = ""

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                request = json.loads(self.rfile.read(length))
                endpoint.requests.append(request)
                endpoint.headers.append(dict(self.headers))
                n = len(endpoint.requests) - 1
                if endpoint.respond is not None:
                    status, body = endpoint.respond(request)
                else:
                    status, body = endpoint.replies[min(n, len(endpoint.replies) - 1)]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    @contextmanager
    def serving(self) -> Iterator[ScriptedEndpoint]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{server.server_port}/v1"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()

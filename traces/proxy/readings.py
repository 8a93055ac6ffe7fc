"""Reading the answers of the paths other than chat completions into the `Exchange` a step
is made of.

`/v1/completions` (text completions) is read as chat completions are, its text standing for
the assistant's content: a whole body is put into chat shape before it is read, each
streamed chunk's `text` becomes a content delta. The raw body and SSE lines recorded are
the upstream's own bytes, never the converted ones.

`/v1/responses` (the Responses API) is kept raw: the body, or every SSE line with its
arrival time; from the final response object (the body, or the stream's
`response.completed`) the output text and function calls (as a chat answer's content and
tool calls), the usage in chat-completions names and the response's id (which a later
request may name as `previous_response_id`). Reasoning items stay in the raw answer.
"""

from __future__ import annotations

import json
from typing import Any

from traces import strict_json
from traces.model import StreamEvent
from traces.sse import StreamReader


def completion_as_chat(raw: str) -> str:
    """A text-completion body in chat-completions shape (each choice's `text` as its
    message's content); `raw` itself when it is not a completion object."""
    try:
        parsed = strict_json.loads(raw)
    except ValueError:
        return raw
    choices = parsed.get("choices") if isinstance(parsed, dict) else None
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        return raw
    converted = [
        {
            "index": choice.get("index", number),
            "message": {"role": "assistant", "content": choice.get("text")},
            "finish_reason": choice.get("finish_reason"),
        }
        for number, choice in enumerate(choices)
    ]
    return json.dumps({**parsed, "choices": converted})


class CompletionStreamReader(StreamReader):
    """A `StreamReader` for a text-completion stream: each choice's `text` is read as a
    content delta (the raw lines kept are the upstream's)."""

    def chunk(self, chunk: Any, t_ms: float, payload: str | None = None) -> None:
        """Take one parsed chunk, its choices' text as content deltas."""
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if isinstance(choices, list):
            chunk = {
                **chunk,
                "choices": [
                    {
                        "index": c.get("index", 0),
                        "delta": {"content": c.get("text") or ""},
                        "finish_reason": c.get("finish_reason"),
                    }
                    for c in choices
                    if isinstance(c, dict)
                ],
            }
        super().chunk(chunk, t_ms, payload)


_FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


class ResponsesReading:
    """What is read of one Responses API answer, whole or streamed."""

    def __init__(self) -> None:
        """Nothing read yet."""
        self.events: list[StreamEvent] = []
        self.final: dict[str, Any] | None = None
        """The final response object (the body, or the stream's last `response.*` one)."""
        self.deltas: list[str] = []
        self.first_text_ms: float | None = None
        self.response_id: str | None = None
        self.failure: str | None = None
        """The message of an `error` event, or of a `response.failed` response."""

    def body(self, raw: str) -> None:
        """A whole (not streamed) answer."""
        try:
            parsed = strict_json.loads(raw)
        except ValueError:
            return
        if isinstance(parsed, dict):
            self._response(parsed)

    def line(self, line: str, t_ms: float) -> None:
        """One non-empty SSE line of a streamed answer, `t_ms` after the request left."""
        self.events.append(StreamEvent(t_ms=t_ms, line=line))
        if not line.startswith("data:"):
            return
        try:
            event = strict_json.loads(line[5:].strip())
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
            if self.first_text_ms is None:
                self.first_text_ms = t_ms
            self.deltas.append(event["delta"])
        elif kind == "response.created" and isinstance(event.get("response"), dict):
            self.response_id = self.response_id or _id(event["response"])
        elif kind in _FINAL_EVENTS and isinstance(event.get("response"), dict):
            self._response(event["response"])
        elif kind == "error":
            self.failure = str(event.get("message") or event.get("code") or "error event")

    def _response(self, response: dict[str, Any]) -> None:
        self.final = response
        self.response_id = _id(response) or self.response_id
        error = response.get("error")
        if isinstance(error, dict) and error.get("message"):
            self.failure = str(error["message"])

    def text(self) -> str | None:
        """The output text: the final response's `output_text` parts, else the deltas."""
        if self.final is not None:
            pieces = [
                part["text"]
                for item in _list(self.final.get("output"))
                if item.get("type") == "message"
                for part in _list(item.get("content"))
                if part.get("type") == "output_text" and isinstance(part.get("text"), str)
            ]
            if pieces:
                return "".join(pieces)
        return "".join(self.deltas) or None

    def usage(self) -> dict[str, Any] | None:
        """The final response's usage in chat-completions names (the counts are the same
        tokens: input as prompt, output as completion)."""
        usage = self.final.get("usage") if self.final is not None else None
        if not isinstance(usage, dict):
            return None
        chat: dict[str, Any] = {
            "prompt_tokens": usage.get("input_tokens"),
            "completion_tokens": usage.get("output_tokens"),
            "total_tokens": usage.get("total_tokens"),
        }
        cached = _get(usage, "input_tokens_details", "cached_tokens")
        if cached is not None:
            chat["prompt_tokens_details"] = {"cached_tokens": cached}
        # Reasoning tokens are left out: the reasoning of a response is hidden (or only
        # summarized in a reasoning item), and the checks would look for it in the content.
        return chat

    def calls(self) -> list[dict[str, Any]]:
        """The final response's function calls as chat-completions tool calls (`call_id` as
        the id, `arguments` as sent)."""
        output = self.final.get("output") if self.final is not None else None
        return [
            {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments")},
            }
            for item in _list(output)
            if item.get("type") == "function_call"
        ]

    def message(self) -> dict[str, Any] | None:
        """The answer as a chat assistant message (its text and function calls); None when
        no response object nor text came."""
        text = self.text()
        calls = self.calls()
        if text is None and not calls and self.final is None:
            return None
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = calls
        return message


def chat_tools(tools: Any) -> list[dict[str, Any]] | None:
    """A Responses API request's function tools in chat-completions shape (for validating
    the calls' arguments against their schemas); None when it declares none."""
    converted = [
        {
            "type": "function",
            "function": {
                "name": tool.get("name"),
                "description": tool.get("description", ""),
                "parameters": tool.get("parameters") or {},
            },
        }
        for tool in _list(tools)
        if tool.get("type") == "function"
    ]
    return converted or None


def _id(response: dict[str, Any]) -> str | None:
    value = response.get("id")
    return value if isinstance(value, str) else None


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _get(usage: dict[str, Any], field: str, name: str) -> Any:
    details = usage.get(field)
    return details.get(name) if isinstance(details, dict) else None

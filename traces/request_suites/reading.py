"""Reading a request suite: one chat-completions request per line, checked before anything is
sent.

Two line forms are read, as the files people already have are written:

- a request body as K2-Vendor-Verifier's test sets hold it (`{"messages": [...], "tools":
  [...], "tool_choice": ..., "temperature": ...}`); its `_input` role is the system role,
  as K2-Vendor-Verifier sends it;
- a line of OpenAI's batch input (`{"custom_id": ..., "method": "POST", "url":
  "/v1/chat/completions", "body": {...}}`).

The model and the streaming mode are the replay's to choose, so `model`, `stream` and
`stream_options` are taken off the body (a line's own `stream` is kept as its default mode).
A line that is not a request is bad input: one line naming the file and the line, exit 2,
and nothing is sent or written.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traces import strict_json
from traces.errors import TracesError
from traces.model import message_hash, request_hash

_TAKEN_OFF = ("model", "stream", "stream_options")
"""Body fields the replay decides itself."""
_INPUT_ROLE = "_input"
"""K2-Vendor-Verifier's name for the system turn in its test sets."""
_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


@dataclass(frozen=True)
class SuiteRequest:
    """One request of a suite, ready to send (without model and stream mode)."""

    line: int
    """Line number in the suite file (1-based)."""
    custom_id: str | None
    """The batch line's `custom_id`, when the line is one."""
    body: dict[str, Any]
    """The request body without `model`, `stream` and `stream_options`."""
    stream: bool | None
    """The line's own `stream` value, when it set one."""
    request_hash: str
    """Its `request_hash` (messages, tools, tool_choice): how answers pair across providers."""
    copy: int
    """How many earlier lines of the suite carry the very same request (0 for the first)."""

    @property
    def label(self) -> str:
        """How progress and reports name the request: its custom_id, else its line."""
        return self.custom_id or f"line {self.line}"

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's messages."""
        messages: list[dict[str, Any]] = self.body["messages"]
        return messages


@dataclass(frozen=True)
class Suite:
    """A request suite read from one file."""

    name: str
    """What its runs are stored under as their task: the file name without `.jsonl`."""
    path: Path
    sha256: str
    """Digest of the file's bytes."""
    requests: list[SuiteRequest]


def read_suite(path: Path, name: str | None = None) -> Suite:
    """Every request of the suite file at `path`; a one-line TracesError (exit 2) naming the
    file and the line at the first line that is not a request, or for a file that cannot be
    read or holds no request."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TracesError(f"{path}: cannot read the suite: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TracesError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    requests: list[SuiteRequest] = []
    seen: Counter[str] = Counter()
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            request = _request(raw, number, seen)
        except _BadLine as bad:
            raise TracesError(f"{path}:{number}: {bad}") from None
        requests.append(request)
    if not requests:
        raise TracesError(f"{path}: no requests (one chat-completions request per line)")
    stem = path.name.removesuffix(".jsonl") if path.name.endswith(".jsonl") else path.stem
    return Suite(
        name=name or stem, path=path, sha256=hashlib.sha256(data).hexdigest(), requests=requests
    )


class _BadLine(Exception):
    """Why a line is not a request (the caller adds the file and line)."""


def _request(raw: str, number: int, seen: Counter[str]) -> SuiteRequest:
    try:
        line = strict_json.loads(raw)
    except ValueError as exc:
        raise _BadLine(f"not JSON ({exc})") from None
    if not isinstance(line, dict):
        raise _BadLine(f"expected a JSON object (a request), got {_kind(line)}")
    custom_id: str | None = None
    if "body" in line and "messages" not in line:
        body, custom_id = _batch_body(line)
    else:
        body = line
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadLine("no `messages`: expected a non-empty list of messages")
    prepared = [_message(m, i) for i, m in enumerate(messages)]
    tools = body.get("tools")
    if tools is not None:
        _check_tools(tools)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _BadLine(f"`stream` must be true or false, got {_kind(stream)}")
    kept = {k: v for k, v in body.items() if k not in _TAKEN_OFF}
    kept["messages"] = prepared
    digest = request_hash([message_hash(m) for m in prepared], kept)
    copy = seen[digest]
    seen[digest] += 1
    return SuiteRequest(
        line=number, custom_id=custom_id, body=kept, stream=stream, request_hash=digest, copy=copy
    )


def _batch_body(line: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The body of an OpenAI batch-input line, and its custom_id."""
    method = line.get("method", "POST")
    if method != "POST":
        raise _BadLine(f"`method` {method!r}: a chat-completions request is POST")
    url = line.get("url", "/v1/chat/completions")
    if not isinstance(url, str) or not url.rstrip("/").endswith(_CHAT_PATHS):
        raise _BadLine(f"`url` {url!r}: only /v1/chat/completions requests can be replayed")
    body = line["body"]
    if not isinstance(body, dict):
        raise _BadLine(f"`body` must be a JSON object (the request), got {_kind(body)}")
    custom_id = line.get("custom_id")
    if custom_id is not None and not isinstance(custom_id, str):
        raise _BadLine(f"`custom_id` must be a string, got {_kind(custom_id)}")
    return body, custom_id


def _message(message: Any, index: int) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise _BadLine(f"messages[{index}] is {_kind(message)}, not a message object")
    role = message.get("role")
    if not isinstance(role, str) or not role:
        raise _BadLine(f"messages[{index}] has no `role`")
    if role == _INPUT_ROLE:
        return {**message, "role": "system"}
    return message


def _check_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise _BadLine(f"`tools` must be a list, got {_kind(tools)}")
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _BadLine(f"tools[{index}] is not a function tool (no `function.name`)")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _BadLine(f"tools[{index}].function.parameters must be a JSON Schema object")


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), "a number")

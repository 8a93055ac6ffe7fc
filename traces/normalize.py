"""Reading a model call the same way whoever served it: the assistant message (reasoning,
content, calls), finish reason, usage, and the step they make.

Works on plain dicts, so live responses (`traces.client`), streamed reassemblies and imported
logs (`traces.importing`) all go through the same reading. The response itself is read
elsewhere: a whole body by `traces.responses`, a stream by `traces.sse`, a failure by
`traces.http_errors`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, Field

from traces import strict_json
from traces.exchange import Exchange
from traces.families import KIMI_ID
from traces.model import (
    ExchangeError,
    FinishReason,
    ReasoningSource,
    StepRecord,
    ToolCallRecord,
    Usage,
    request_hash,
)

_THINK_BLOCK = re.compile(r"^\s*<think>(.*?)</think>\s*", re.DOTALL)
_THINK_CLOSE_ONLY = re.compile(r"^(.*?)</think>\s*", re.DOTALL)
_HARMONY_MESSAGE = re.compile(
    r"(?:<\|start\|>assistant)?(?P<header>[^<]*)<\|channel\|>(?P<channel>\w+)(?P<rest>[^<]*)"
    r"(?:<\|constrain\|>\w*)?<\|message\|>(?P<text>.*?)(?=<\|end\|>|<\|return\|>|<\|call\|>"
    r"|<\|start\|>|$)(?:<\|end\|>|<\|return\|>|<\|call\|>)?",
    re.DOTALL,
)
_WORD = re.compile(r"\w+|[^\w\s]")

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
"""The range of the store's INTEGER columns (token counts)."""

SchemaValidator = Callable[[str, Any], tuple[bool | None, str | None]]
"""(tool name, parsed arguments) -> (schema_valid, first error); None when the tool is unknown."""


class Reading(BaseModel):
    """The normalized reading of one assistant message."""

    reasoning: str | None = None
    reasoning_source: ReasoningSource = "none"
    content: str | None = Field(default=None, description="Visible text, think block removed.")
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)


def read_reasoning(message: dict[str, Any]) -> tuple[str | None, ReasoningSource, str | None]:
    """Reasoning text, its source, and the content with any inline think block removed."""
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    for field in ("reasoning_content", "reasoning"):
        value = message.get(field)
        if isinstance(value, str) and value:
            return value, field, content
    details = message.get("reasoning_details")
    if isinstance(details, list) and details:
        texts = [
            str(d.get("text") or d.get("summary") or "")
            for d in details
            if isinstance(d, dict) and (d.get("text") or d.get("summary"))
        ]
        if texts:
            return "\n".join(texts), "reasoning_details", content
    if isinstance(content, str) and "<|channel|>" in content:
        harmony = _read_harmony(content)
        if harmony is not None:
            return harmony[0], "harmony", harmony[1]
    if isinstance(content, str):
        match = _THINK_BLOCK.match(content)
        if match:
            return match.group(1).strip(), "think_tag", content[match.end() :]
        # The prompt often opens <think> itself, so only the closing tag reaches the output:
        # told apart from a whole block, because no host should send it that way.
        if "</think>" in content and "<think>" not in content:
            match = _THINK_CLOSE_ONLY.match(content)
            if match:
                return match.group(1).strip(), "think_close", content[match.end() :]
    return None, "none", content


def _read_harmony(content: str) -> tuple[str, str | None] | None:
    """(reasoning, visible content) of gpt-oss harmony text left in `content` by a server.

    Analysis messages are reasoning and final messages the answer; a message addressed to a
    tool (`to=functions.NAME`) stays in content verbatim, because a call left as text is a
    parsing failure the checks must see.
    """
    reasoning: list[str] = []
    visible: list[str] = []
    position = 0
    for match in _HARMONY_MESSAGE.finditer(content):
        if match.start() > position:
            visible.append(content[position : match.start()])
        position = match.end()
        addressed = "to=" in match.group("header") or "to=" in match.group("rest")
        if addressed:
            visible.append(match.group(0))
        elif match.group("channel") == "analysis":
            reasoning.append(match.group("text"))
        else:
            visible.append(match.group("text"))
    if not reasoning:
        return None
    visible.append(content[position:])
    text = "".join(visible)
    return "\n".join(reasoning), text or None


def id_format(call_id: str | None) -> str:
    """Shape of a tool-call id: openai (`call_…`), kimi (`functions.NAME:IDX`), other, missing."""
    if not call_id:
        return "missing"
    if call_id.startswith("call_"):
        return "openai"
    if KIMI_ID.match(call_id):
        return "kimi"
    return "other"


def read_tool_calls(
    message: dict[str, Any], validate: SchemaValidator | None = None
) -> list[ToolCallRecord]:
    """Every tool call of the message, with arguments kept raw and parsed side by side."""
    records: list[ToolCallRecord] = []
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        raw_args = function.get("arguments")
        if isinstance(raw_args, str):
            arguments_type = "string"
            arguments_raw = raw_args
            try:
                parsed: Any = strict_json.loads(raw_args) if raw_args.strip() else None
            except ValueError:  # `NaN` or nesting too deep is no more JSON than a typo
                parsed = None
        elif raw_args is None:
            arguments_type, arguments_raw, parsed = "missing", "", None
        else:
            arguments_type = "object"
            arguments_raw = json.dumps(raw_args, ensure_ascii=False)
            parsed = raw_args
        json_valid = isinstance(parsed, dict)
        name = str(function.get("name") or "")
        schema_valid: bool | None = None
        schema_error: str | None = None
        if json_valid and validate is not None:
            schema_valid, schema_error = validate(name, parsed)
        records.append(
            ToolCallRecord(
                index=index,
                id=call.get("id"),
                id_format=id_format(call.get("id")),
                name=name,
                arguments_raw=arguments_raw,
                arguments_type=arguments_type,
                arguments=parsed if json_valid else None,
                json_valid=json_valid,
                schema_valid=schema_valid,
                schema_error=schema_error,
            )
        )
    return records


def read_message(message: dict[str, Any], validate: SchemaValidator | None = None) -> Reading:
    """The normalized reading of one assistant message."""
    reasoning, source, content = read_reasoning(message)
    return Reading(
        reasoning=reasoning,
        reasoning_source=source,
        content=content,
        tool_calls=read_tool_calls(message, validate),
    )


def normalize_finish_reason(raw: str | None) -> FinishReason:
    """Map the many spellings of finish_reason onto a closed set."""
    if raw is None:
        return "none"
    lowered = raw.lower()
    if lowered in ("stop", "end_turn", "eos", "stop_sequence"):
        return "stop"
    if lowered in ("tool_calls", "function_call", "tool_use"):
        return "tool_calls"
    if lowered in ("length", "max_tokens"):
        return "length"
    if lowered == "content_filter":
        return "content_filter"
    if lowered == "error":
        return "error"
    return "other"


def ascii_byte_classes() -> bytes:
    """A translation table sending each ASCII byte to its class under `_WORD`: `a` for a word
    character, a space for whitespace, `.` for anything else (a token of its own)."""
    table = bytearray(b"." * 256)
    for code in range(128):
        char = chr(code)
        if char.isalnum() or char == "_":
            table[code] = ord("a")
        elif char.isspace():
            table[code] = ord(" ")
    return bytes(table)


_BYTE_CLASSES = ascii_byte_classes()
_WORDS_APART = bytes.maketrans(b".", b" ")


def estimate_tokens(text: str) -> int:
    """A rough token count (words and punctuation) for when an endpoint reports none."""
    if not text.isascii():
        return len(_WORD.findall(text))
    return estimate_ascii_tokens(text.encode("ascii"))


def estimate_ascii_tokens(data: bytes) -> int:
    """`estimate_tokens` of ASCII text already encoded (a caller that has the bytes anyway
    need not encode it again)."""
    # The same count as the pattern, without building a list of matches: the checks size
    # every tool result and reasoning of a run this way, so it runs over the whole store.
    # A word starts at each word byte not preceded by one; every other non-space byte is one.
    classes = data.translate(_BYTE_CLASSES)
    # ` a` counted once with `.` made a space: cheaper than counting ` a` and `.a` apart.
    words = classes.translate(_WORDS_APART)
    starts = words.count(b" a") + words.startswith(b"a")
    return starts + classes.count(b".")


def normalize_usage(raw: dict[str, Any] | None, reasoning: str | None) -> Usage:
    """Usage with cached and reasoning tokens read from wherever the provider put them."""
    if not raw:
        if reasoning:
            return Usage(
                reasoning_tokens=estimate_tokens(reasoning), reasoning_tokens_source="estimated"
            )
        return Usage()

    def as_int(value: Any) -> int | None:
        # A count the INTEGER columns cannot hold (`1e300` tokens) is no count: the raw
        # usage keeps it, the column stays empty rather than failing the step's insert.
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return int(value) if _INT_MIN <= value <= _INT_MAX else None

    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    cached = as_int(prompt_details.get("cached_tokens"))
    if cached is None:
        cached = as_int(raw.get("prompt_cache_hit_tokens"))
    reasoning_tokens = as_int(completion_details.get("reasoning_tokens"))
    if reasoning_tokens is None:
        reasoning_tokens = as_int(raw.get("reasoning_tokens"))
    source = "reported" if reasoning_tokens is not None else "missing"
    if reasoning_tokens is None and reasoning:
        reasoning_tokens, source = estimate_tokens(reasoning), "estimated"
    return Usage(
        prompt_tokens=as_int(raw.get("prompt_tokens")),
        completion_tokens=as_int(raw.get("completion_tokens")),
        reasoning_tokens=reasoning_tokens,
        reasoning_tokens_source=source,
        cached_tokens=cached,
        total_tokens=as_int(raw.get("total_tokens")),
    )


def step_from_exchange(
    run_id: str,
    index: int,
    exchange: Exchange,
    reading: Reading | None,
    *,
    message_hashes: Sequence[str],
    prefix: int,
    retry_errors: list[ExchangeError] | None = None,
    pairing_hash: str | None = None,
) -> StepRecord:
    """The step one exchange makes: raw request and response beside their normalized reading.

    `message_hashes` are the hashes of the request's messages; the first `prefix` of them
    were already stored with an earlier step of the run, so only the rest go with this one.
    `reading` is None when the call produced no message (an error). `pairing_hash` is the
    request's `request_hash` when the caller has it already.
    """
    params = {k: v for k, v in exchange.request_body.items() if k != "messages"}
    errors = retry_errors or []
    step = StepRecord(
        run_id=run_id,
        index=index,
        started_at=exchange.started_at,
        latency_ms=exchange.latency_ms,
        ttft_reasoning_ms=exchange.ttft_reasoning_ms,
        ttft_content_ms=exchange.ttft_content_ms,
        ttft_tool_call_ms=exchange.ttft_tool_call_ms,
        streamed=exchange.streamed,
        http_status=exchange.http_status,
        request_id=exchange.headers.get("x-request-id") or exchange.headers.get("request-id"),
        response_headers=exchange.headers,
        request_params=params,
        request_message_count=len(message_hashes),
        request_prefix=prefix,
        request_new_hashes=list(message_hashes[prefix:]),
        response_body=exchange.response_body,
        stream_events=exchange.stream_events,
        finish_reason_raw=exchange.finish_reason_raw,
        finish_reason=normalize_finish_reason(exchange.finish_reason_raw),
        usage_raw=exchange.usage_raw,
        error=exchange.error,
        retries=len(errors),
        retry_errors=errors,
        anomalies=exchange.anomalies,
        request_hash=pairing_hash or request_hash(message_hashes, params),
        upstream_provider=exchange.upstream_provider,
    )
    if reading is not None:
        step.reasoning = reading.reasoning
        step.reasoning_source = reading.reasoning_source
        step.content = reading.content
        step.tool_calls = reading.tool_calls
        step.usage = normalize_usage(exchange.usage_raw, reading.reasoning)
    return step

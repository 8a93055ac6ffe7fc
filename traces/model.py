"""The trace model: what one run, step, tool call and tool result are, raw and normalized.

These records are the only shapes that cross from the harness to the store; SDK objects never
leave `traces.client`. Field descriptions double as the column documentation of the store.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field


class RunStatus(StrEnum):
    """Where a run stands."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class Termination(StrEnum):
    """Why a run stopped.

    No value blames a tool: every tool failure (unknown name, bad arguments, a crash, a
    sandbox refusal) goes back to the model as the call's result, and the run goes on.
    """

    COMPLETED = "completed"
    """The model gave a final answer (success is judged separately)."""
    MAX_STEPS = "max_steps"
    """The task's step limit was reached before a final answer."""
    MODEL_ERROR = "model_error"
    """The model produced nothing usable: an empty turn, or output cut at the token limit."""
    PROVIDER_ERROR = "provider_error"
    """The endpoint failed (HTTP error, timeout, unreadable body) after the allowed retries."""
    INTERRUPTED = "interrupted"
    """The recording process was stopped (signal, crash or kill) before the run ended."""
    CONTEXT_OVERFLOW = "context_overflow"
    """The endpoint refused the request because the prompt exceeds the context window."""
    CLIENT_ERROR = "client_error"
    """agent-traces itself failed (a bug on our side, recorded instead of lost)."""


ReasoningSource = Literal[
    "reasoning_content",
    "reasoning",
    "reasoning_details",
    "think_tag",
    "think_close",
    "harmony",
    "none",
]
"""Where a step's reasoning text was read from. `think_close`: content held the reasoning
ended by a lone `</think>` (the prompt opened the tag and no reasoning parser ran)."""

FinishReason = Literal["stop", "tool_calls", "length", "content_filter", "error", "other", "none"]
"""Normalized finish reason; the raw string is kept beside it."""

ErrorKind = Literal[
    "rate_limit",
    "server_error",
    "timeout",
    "connection",
    "context_overflow",
    "bad_request",
    "auth",
    "not_found",
    "invalid_response",
    "empty_response",
    "cancelled",
    "other",
]
"""Class of a failed model call, from the HTTP status, the error body and the transport.
`cancelled`: the client itself went away before the response ended (a client of `traces
proxy` that hung up mid-stream); no layer's fault."""


class ToolErrorKind(StrEnum):
    """Why a tool call failed: a closed set, as inspect_ai types `ToolCallError`.

    The first two are the call's fault (the model's, or the host parser's); `missing`,
    `sandbox` and `rejected` are a well-formed call the tool answered correctly with a no
    (the model asked for what does not exist or is not allowed); `timeout` and `crashed` are
    the tool's own failures.
    """

    NOT_FOUND = "not_found"
    """The call named a tool the request did not declare."""
    INVALID_ARGUMENTS = "invalid_arguments"
    """The arguments are not a JSON object, or do not fit the tool's JSON Schema."""
    MISSING = "missing"
    """The arguments name something the tool does not have: a box, document, file or
    directory that does not exist (an id or path the model made up)."""
    SANDBOX = "sandbox"
    """The sandbox refused a path: absolute, a `..` escape, a symlink leading out, a NUL."""
    REJECTED = "rejected"
    """The tool ran and answered with an error about the request itself: a locked box, a
    directory where a file is needed, a size over the limit."""
    TIMEOUT = "timeout"
    """The tool did not finish within the harness's time limit."""
    CRASHED = "crashed"
    """The tool raised an exception, or the host failed it (an I/O error): a tool bug."""


TokenSource = Literal["reported", "estimated", "missing"]
"""Whether a token count came from the endpoint's usage block, was estimated, or is absent."""


def message_hash(message: dict[str, Any]) -> str:
    """Content address of a chat message: sha256 of its canonical JSON (sorted keys, no spaces).

    Two byte-identical messages in different runs share one row, which is what keeps a
    300-step run O(steps) in storage rather than O(steps^2).
    """
    canonical = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def request_suffix(tools_json: str, tool_choice: Any) -> bytes:
    """What a request hash digests after the message hashes: its tools (as `canonical_json`
    text, which callers may cache per tool set) and its tool_choice."""
    return f'{{"tool_choice":{canonical_json(tool_choice)},"tools":{tools_json}}}'.encode()


def digest_request(message_hashes: Sequence[str], suffix: bytes) -> str:
    """The request hash from its message hashes and `request_suffix`."""
    digest = hashlib.sha256("".join(h + "\n" for h in message_hashes).encode())
    digest.update(suffix)
    return digest.hexdigest()


def request_hash(message_hashes: Sequence[str], params: dict[str, Any]) -> str:
    """Identity of a request for pairing it across providers: its messages (by hash), tools and
    tool_choice. Sampling settings and the model name are left out on purpose: two hosts asked
    the same thing with their own model ids and defaults are still answering the same request.
    """
    suffix = request_suffix(canonical_json(params.get("tools")), params.get("tool_choice"))
    return digest_request(message_hashes, suffix)


class Usage(BaseModel):
    """Token usage of one step, normalized, with where each number came from."""

    prompt_tokens: int | None = Field(default=None, description="Prompt tokens as reported.")
    completion_tokens: int | None = Field(
        default=None, description="Completion tokens as reported (reasoning included, per OpenAI)."
    )
    reasoning_tokens: int | None = Field(
        default=None, description="Reasoning tokens, reported or estimated (see source)."
    )
    reasoning_tokens_source: TokenSource = Field(
        default="missing", description="Whether reasoning_tokens was reported or estimated."
    )
    cached_tokens: int | None = Field(
        default=None,
        description="Prompt tokens served from cache (`prompt_tokens_details.cached_tokens` "
        "or `prompt_cache_hit_tokens`).",
    )
    total_tokens: int | None = Field(default=None, description="Total tokens as reported.")


class ToolCallRecord(BaseModel):
    """One tool call the model made in a step."""

    index: int = Field(description="Position of the call within the step (0-based).")
    id: str | None = Field(description="The tool-call id exactly as the endpoint sent it.")
    id_format: Literal["openai", "kimi", "other", "missing"] = Field(
        description="Shape of the id: `call_…` (openai), `functions.NAME:IDX` (kimi), other, "
        "missing."
    )
    name: str = Field(description="Function name as sent.")
    arguments_raw: str = Field(
        description="Arguments exactly as sent: the string, or the JSON text of an object."
    )
    arguments_type: Literal["string", "object", "missing"] = Field(
        description="Whether the endpoint sent arguments as a JSON string (OpenAI form) or object."
    )
    arguments: Any = Field(
        default=None, description="Parsed arguments, or null when they are not valid JSON."
    )
    json_valid: bool = Field(description="Whether the arguments parse as a JSON object.")
    schema_valid: bool | None = Field(
        default=None,
        description="Whether parsed arguments validate against the declared tool's schema "
        "(null when the tool is unknown or the JSON is invalid).",
    )
    schema_error: str | None = Field(
        default=None, description="First schema error as `path: message`, when invalid."
    )


class ToolResultRecord(BaseModel):
    """What the harness executed for one tool call and sent back to the model."""

    index: int = Field(description="Position of the call within its step.")
    tool_call_id: str | None = Field(description="The id the result answers, as sent back.")
    name: str = Field(description="Function name executed.")
    output: str = Field(description="Text returned to the model as the tool message.")
    error: str | None = Field(default=None, description="Error text when the call failed.")
    error_kind: ToolErrorKind | None = Field(
        default=None, description="Why the call failed; None when it did not, or is unknown."
    )
    started_at: datetime = Field(description="When execution began (UTC).")
    duration_ms: float = Field(description="Wall time of the execution.")
    structured: Any = Field(
        default=None, description="An MCP tool's structured content, as it sent it (or None)."
    )


class ExchangeError(BaseModel):
    """A model call that did not produce a usable response."""

    kind: ErrorKind = Field(description="Error class.")
    status: int | None = Field(default=None, description="HTTP status, when there was one.")
    message: str = Field(description="One-line description.")
    body: str | None = Field(default=None, description="Raw error body as received.")


class StreamEvent(BaseModel):
    """One raw server-sent-event line and when it arrived."""

    t_ms: float = Field(description="Milliseconds since the request was sent, to the microsecond.")
    line: str = Field(description="The raw line, `data: ` prefix included.")


class StepRecord(BaseModel):
    """One model call: the exact request, the raw response, and its normalized reading."""

    run_id: str
    index: int = Field(description="Step number within the run, from 0.")
    started_at: datetime = Field(description="When the request was sent (UTC).")
    latency_ms: float = Field(description="Time from sending the request to the end of the body.")
    ttft_reasoning_ms: float | None = Field(
        default=None, description="Time to the first reasoning chunk (streams only)."
    )
    ttft_content_ms: float | None = Field(
        default=None, description="Time to the first content chunk (streams only)."
    )
    ttft_tool_call_ms: float | None = Field(
        default=None, description="Time to the first tool-call chunk (streams only)."
    )
    streamed: bool = Field(description="Whether the response was streamed.")
    http_status: int | None = Field(default=None, description="HTTP status of the last attempt.")
    request_id: str | None = Field(default=None, description="Provider request id header.")
    response_headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers worth keeping (request id, rate limits, processing time).",
    )
    request_params: dict[str, Any] = Field(
        description="The request body exactly as sent, minus `messages`."
    )
    request_message_count: int = Field(description="Messages in the request.")
    request_prefix: int = Field(
        description="Leading messages shared with the previous step's request; only the "
        "messages after them are stored for this step (`step_messages`)."
    )
    request_new_hashes: list[str] = Field(
        description="Hashes of the request's messages from position `request_prefix` on."
    )
    response_body: str | None = Field(
        default=None, description="Raw response body (non-streaming or error)."
    )
    stream_events: list[StreamEvent] | None = Field(
        default=None, description="Every raw SSE line with its arrival time (streams)."
    )
    finish_reason_raw: str | None = Field(default=None, description="finish_reason as sent.")
    finish_reason: FinishReason = Field(default="none", description="Normalized finish reason.")
    reasoning: str | None = Field(default=None, description="Reasoning text, normalized.")
    reasoning_source: ReasoningSource = Field(
        default="none", description="Field the reasoning was read from."
    )
    content: str | None = Field(default=None, description="Visible answer text, normalized.")
    usage: Usage = Field(default_factory=Usage)
    usage_raw: dict[str, Any] | None = Field(
        default=None, description="The usage block exactly as sent."
    )
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    replay_message_hash: str | None = Field(
        default=None, description="Hash of the assistant message sent back to the model."
    )
    error: ExchangeError | None = Field(default=None)
    retries: int = Field(default=0, description="Attempts that failed before this one.")
    retry_errors: list[ExchangeError] = Field(
        default_factory=list, description="The errors of the failed attempts."
    )
    anomalies: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Irregularities noticed while reading the response (stream quirks...).",
    )
    request_hash: str | None = Field(
        default=None, description="`request_hash` of the request, to pair it across providers."
    )
    upstream_provider: str | None = Field(
        default=None, description="Host that served the call behind a router, when it says."
    )
    resumption: int | None = Field(
        default=None,
        description="Set on the first step a resumption of the run sent: its number (1, 2…).",
    )


class RunRecord(BaseModel):
    """One agent episode, as it is when it starts; totals are filled in when it ends."""

    id: str
    task: str = Field(description="Task name.")
    task_path: str = Field(description="Task file the run was built from.")
    task_sha256: str = Field(description="Hash of the task file bytes.")
    provider: str = Field(description="Provider label (`sim` for the embedded simulator).")
    model: str = Field(description="Model id sent in requests.")
    base_url: str = Field(description="Endpoint base URL (credentials stripped).")
    settings: dict[str, Any] = Field(description="Run settings: stream, max_steps, seed...")
    seed: int = Field(description="Seed of the task world (and of the request when sent).")
    started_at: datetime
    recorder_pid: int = Field(description="Process that recorded the run (to spot dead ones).")
    recorder_host: str = Field(description="Host that recorded the run.")
    origin: Literal["recorded", "imported", "probe", "proxy", "replay"] = Field(
        default="recorded",
        description="Recorded live, imported from a log, one probe of `traces probe`, a "
        "conversation a client held through `traces proxy`, or one request of a suite sent by "
        "`traces replay`.",
    )
    import_id: str | None = Field(default=None, description="Import the run came from.")
    conversation: str | None = Field(
        default=None, description="Conversation label of an imported run."
    )
    retry_of: str | None = Field(
        default=None, description="The failed run this run records again, when it is a retry."
    )
    sample: str | None = Field(
        default=None, description="The id of the dataset sample the run answers, if any."
    )


class RunOutcome(BaseModel):
    """How a run ended."""

    status: RunStatus
    termination: Termination
    ended_at: datetime
    success: bool | None = Field(default=None, description="Task success check verdict.")
    success_detail: str | None = None
    final_answer: str | None = None
    error: str | None = Field(default=None, description="One line on what stopped the run.")
    steps: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    prompt_tokens: int | None = Field(
        default=None,
        description="Total over the steps, None unless every answered step reported it "
        "(`traces.token_totals`).",
    )
    completion_tokens: int | None = Field(
        default=None, description="Total over the steps, None unless every answered step did."
    )
    reasoning_tokens: int | None = Field(
        default=None, description="Total over the steps, None unless every answered step did."
    )


def new_run_id() -> str:
    """A run id that sorts by start time and stays unique across processes."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(4)

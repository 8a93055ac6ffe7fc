"""One request/response exchange with an endpoint, as plain data (no SDK objects)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from traces.model import ExchangeError, StreamEvent


class Exchange(BaseModel):
    """What one model call sent and got back, raw, before any interpretation."""

    request_body: dict[str, Any] = Field(description="The body exactly as sent.")
    started_at: datetime
    latency_ms: float
    streamed: bool
    http_status: int | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    response_body: str | None = None
    stream_events: list[StreamEvent] | None = None
    message: dict[str, Any] | None = Field(
        default=None,
        description="The assistant message with every field as received (assembled from "
        "deltas for streams).",
    )
    finish_reason_raw: str | None = None
    usage_raw: dict[str, Any] | None = None
    ttft_reasoning_ms: float | None = None
    ttft_content_ms: float | None = None
    ttft_tool_call_ms: float | None = None
    anomalies: list[dict[str, Any]] = Field(default_factory=list)
    upstream_provider: str | None = Field(
        default=None,
        description="Top-level `provider` of the response: the host a router sent the call to.",
    )
    error: ExchangeError | None = None

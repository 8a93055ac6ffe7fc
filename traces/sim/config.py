"""Settings of one simulator instance."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ReasoningField = Literal["reasoning_content", "reasoning", "think"]
"""Where reasoning travels on the wire: a message field, or a leading `<think>` block in content."""


class SimConfig(BaseModel):
    """How the simulator behaves; one instance serves every request of one server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(
        default=0,
        description="Default seed of the policy; a request's own `seed` field overrides it.",
    )
    model: str = Field(
        default="sim-reasoner-1",
        min_length=1,
        description="Model id listed by /v1/models (responses echo the requested model id).",
    )
    reasoning_field: ReasoningField = Field(
        default="reasoning_content",
        description="Dialect of reasoning: emitted in the `reasoning_content` or `reasoning` "
        "message/delta field, or inline as a `<think>...</think>` block at the start of "
        "`content` ('think'). The chat template reads history reasoning from the same place.",
    )
    latency_ms: float = Field(
        default=0.0,
        ge=0.0,
        description="Artificial delay before each response, in milliseconds.",
    )
    chunk_chars: int = Field(
        default=24,
        ge=1,
        description="Size in characters of each streamed reasoning, content or argument piece.",
    )

"""Settings of one simulator instance."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from traces.dialects import known_dialect
from traces.sim.faults import FAULTS


class SimConfig(BaseModel):
    """How the simulator behaves; one instance serves every request of one server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(
        default=0,
        description="Default seed of the policy (a request's own `seed` field overrides it) "
        "and the seed of fault selection.",
    )
    model: str = Field(
        default="sim-reasoner-1",
        min_length=1,
        description="Model id listed by /v1/models (responses echo the requested model id).",
    )
    dialect: str = Field(
        default="openai",
        description="Host to emulate (a name in `traces.dialects.DIALECTS`): where reasoning "
        "is emitted and read back, the id style, and the chat-template family that decides "
        "what of the history reaches the model.",
    )
    faults: dict[str, float] = Field(
        default_factory=dict,
        description="Fault name -> rate in [0, 1]: the share of distinct requests it fires "
        "on. Whether it fires depends only on the seed, the fault and the request's messages.",
    )
    timeout_s: float = Field(
        default=30.0,
        ge=0.0,
        description="How long the `timeout` fault holds a response before sending it.",
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

    @field_validator("dialect")
    @classmethod
    def _known_dialect(cls, name: str) -> str:
        return known_dialect(name)

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, faults: dict[str, float]) -> dict[str, float]:
        for name, rate in faults.items():
            if name not in FAULTS:
                raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rate of fault {name!r} must be within [0, 1], not {rate}")
        return faults

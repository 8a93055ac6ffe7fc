"""Serving-stack dialects: how each host carries reasoning, tool-call ids and arguments.

Provider differences are data, not code: a provider profile names one of these dialects
(and may override fields), the harness sends history back the way it says, and the
simulator emulates it, so every difference the analyzer detects can be produced on demand.
A dialect holds only what the host decides; what the weights decide (chat template, the id
style the template renders) belongs to the model family (`traces.families`), resolved from
the model id.
Sources for each entry: `shared/external/dialects/wire_examples/reasoning_field_shapes.json`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from traces.families import TemplateFamily
from traces.wire_forms import ArgumentForm, IdsBack, ReasoningLocation


class Dialect(BaseModel):
    """How one serving stack speaks chat completions with interleaved reasoning and tools."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Dialect name, used by profiles and `traces sim --dialect`.")
    description: str = Field(description="Who speaks it, in one line.")
    family: TemplateFamily = Field(
        description="Family the host serves when the model id names none (the simulator's own "
        "model, or a host with one family of models)."
    )
    reasoning_out: ReasoningLocation = Field(
        description="Where responses carry reasoning (message field, delta field, or inline)."
    )
    reasoning_in: tuple[ReasoningLocation, ...] = Field(
        description="History fields the host feeds to its template; reasoning sent anywhere "
        "else is silently ignored (and prompt_tokens show it)."
    )
    reasoning_back: ReasoningLocation = Field(
        description="Where a client should send each turn's reasoning back."
    )
    reasoning_copies: tuple[ReasoningLocation, ...] = Field(
        default=(),
        description="Further response fields carrying a copy of the reasoning beside "
        "`reasoning_out` (OpenRouter sends `reasoning` next to `reasoning_details`).",
    )
    requires_reasoning_back: bool = Field(
        default=False,
        description="The host answers HTTP 400 when an assistant tool-call turn of the current "
        "chain comes back without its reasoning (DeepSeek thinking mode).",
    )
    ids_back: IdsBack | None = Field(
        default=None,
        description="How the host wants tool-call ids back, whatever the model family: None "
        "follows the family (Kimi's `functions.NAME:IDX`, else as received); a profile sets "
        "it for a host that maps ids itself.",
    )
    arguments_back: ArgumentForm = Field(
        default="string",
        description="Whether history tool-call arguments go back as JSON "
        "strings (OpenAI form) or objects.",
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Body fields the host needs to speak this dialect."
    )


_DIALECTS = [
    Dialect(
        name="openai",
        description="Plain OpenAI-compatible server; reasoning in reasoning_content",
        family="chatml",
        reasoning_out="reasoning_content",
        reasoning_in=("reasoning_content",),
        reasoning_back="reasoning_content",
    ),
    Dialect(
        name="moonshot",
        description="Moonshot's Kimi API: reasoning_content, functions.NAME:IDX ids",
        family="kimi",
        reasoning_out="reasoning_content",
        reasoning_in=("reasoning_content",),
        reasoning_back="reasoning_content",
    ),
    Dialect(
        name="deepseek",
        description="DeepSeek API thinking mode: reasoning_content must come back (400 if not)",
        family="deepseek",
        reasoning_out="reasoning_content",
        reasoning_in=("reasoning_content",),
        reasoning_back="reasoning_content",
        requires_reasoning_back=True,
    ),
    Dialect(
        name="minimax",
        description="MiniMax API: <think> block inside content, sent back verbatim",
        family="minimax",
        reasoning_out="think_tag",
        reasoning_in=("think_tag", "reasoning_content"),
        reasoning_back="think_tag",
    ),
    Dialect(
        name="minimax-split",
        description="MiniMax API with reasoning_split: reasoning_details[] beside content",
        family="minimax",
        reasoning_out="reasoning_details",
        reasoning_in=("reasoning_details", "think_tag", "reasoning_content"),
        reasoning_back="reasoning_details",
        extra_body={"reasoning_split": True},
    ),
    Dialect(
        name="zai",
        description="Z.ai GLM API: reasoning_content, interleaved thinking since GLM-4.5",
        family="glm",
        reasoning_out="reasoning_content",
        reasoning_in=("reasoning_content",),
        reasoning_back="reasoning_content",
    ),
    Dialect(
        name="openrouter",
        description="OpenRouter: reasoning plus reasoning_details[], details passed back whole",
        family="chatml",
        reasoning_out="reasoning_details",
        reasoning_in=("reasoning_details", "reasoning"),
        reasoning_back="reasoning_details",
        reasoning_copies=("reasoning",),
    ),
    Dialect(
        name="reasoning-field",
        description="Hosts answering in `reasoning` (Together, Groq parsed format)",
        family="chatml",
        reasoning_out="reasoning",
        reasoning_in=("reasoning",),
        reasoning_back="reasoning",
    ),
    Dialect(
        name="vllm",
        description="vLLM since PR #27752: answers in `reasoning`, reads only `reasoning` back",
        family="qwen",
        reasoning_out="reasoning",
        reasoning_in=("reasoning",),
        reasoning_back="reasoning",
    ),
    Dialect(
        name="sglang",
        description="SGLang with --reasoning-parser: reasoning_content",
        family="qwen",
        reasoning_out="reasoning_content",
        reasoning_in=("reasoning_content",),
        reasoning_back="reasoning_content",
    ),
    Dialect(
        name="llamacpp",
        description="llama.cpp server, --reasoning-format deepseek: reasoning_content; "
        "arguments as objects in its templates",
        family="qwen",
        reasoning_out="reasoning_content",
        reasoning_in=("reasoning_content",),
        reasoning_back="reasoning_content",
    ),
    Dialect(
        name="harmony",
        description="gpt-oss served raw: harmony analysis/final channels inside content",
        family="gpt-oss",
        reasoning_out="harmony",
        reasoning_in=("reasoning", "reasoning_content"),
        reasoning_back="reasoning",
    ),
]

DIALECTS: dict[str, Dialect] = {d.name: d for d in _DIALECTS}
"""Every known dialect by name."""


def known_dialect(name: str) -> str:
    """`name`, when a dialect has it; ValueError listing the known names otherwise (the one
    wording of profiles, the simulator's settings and `traces sim --dialect`)."""
    if name not in DIALECTS:
        raise ValueError(f"unknown dialect {name!r} (known: {', '.join(DIALECTS)})")
    return name

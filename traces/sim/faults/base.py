"""The shapes every fault shares: what it may look at, what it returns, how it is listed.

A fault acts at one stage of answering a request: before anything is computed (`request`:
refuse or stall), on the sampling parameters the host honours (`sampling`: one silently
dropped), while the host renders the prompt (`prompt`), on the reply (`reply`), on
the streamed deltas (`stream`), or on the bytes as they are written (`wire`: a broken event, a
stream cut short, a dropped connection). Its function returns None when it does not apply to
this request (a tool-call fault on an answer turn), so only faults that changed something are
reported in `x-sim-faults`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from traces.dialects import Dialect
from traces.sim.reply import Reply
from traces.sim.sampling import Sampling
from traces.sim.templates import ChatTemplate
from traces.sim.templates.base import ToolResults
from traces.sim.wire import Chunk
from traces.wire_forms import IdStyle

Blame = Literal["model", "provider"]
"""Who a checker should blame: the model's output, or the serving stack around it."""

Stage = Literal["request", "sampling", "prompt", "reply", "stream", "wire"]


def roll(seed: int, name: str, key: str) -> float:
    """A number in [0, 1) that depends only on (seed, name, key)."""
    digest = hashlib.blake2b(f"{seed}\x00{name}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True, slots=True)
class FaultContext:
    """What a fault may consult about the request it acts on."""

    dialect: Dialect
    template: ChatTemplate
    """The chat template of the model family the request's model id names."""
    messages: Sequence[Mapping[str, Any]]
    seed: int
    key: str
    """Digest of the request's messages; with `seed`, the only source of fault randomness."""
    stream: bool
    sends_usage: bool
    """Whether the response carries a usage object (always, or with include_usage)."""
    timeout_s: float
    model: str = ""
    """The model id the request asked for."""
    max_tokens: int | None = None
    """The request's `max_completion_tokens` or `max_tokens`, when it set one."""
    tools: Sequence[Mapping[str, Any]] = ()
    """The request's declared tools (OpenAI function-tool dicts)."""
    authorization: str = ""
    """The request's `Authorization` header as sent ("" without one), for hosts that echo it."""
    id_style: IdStyle = "openai"
    """Ids the reply's calls carry: the family's own (Kimi), else the host's `call_…`."""

    def parameters(self) -> dict[str, Mapping[str, Any]]:
        """The declared function tools: name -> JSON Schema of their parameters."""
        schemas: dict[str, Mapping[str, Any]] = {}
        for tool in self.tools:
            function = tool.get("function")
            if isinstance(function, Mapping) and isinstance(function.get("name"), str):
                parameters = function.get("parameters")
                schemas[function["name"]] = parameters if isinstance(parameters, Mapping) else {}
        return schemas

    def roll(self, salt: str) -> float:
        """A deterministic number in [0, 1) for a choice inside a fault."""
        return roll(self.seed, salt, self.key)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An error response sent instead of a completion."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Stall:
    """Hold the response this long (a client with a shorter timeout gives up)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Written:
    """A response as the host writes it: one write per piece (a whole JSON body, or one SSE
    event each), and whether it ends cleanly or the connection drops after the last piece."""

    pieces: tuple[bytes, ...]
    streamed: bool
    complete: bool = True
    trickle: bytes | None = None
    """Written again and again after the pieces, every `TRICKLE_S`, until the client leaves:
    a response that never ends (then `complete` is False)."""


TRICKLE_S = 0.05
"""How often a never-ending response writes its next piece."""


@dataclass(frozen=True, slots=True)
class PromptOptions:
    """How the host renders the history."""

    history_reasoning: bool = True
    """False: no earlier turn's reasoning reaches the model."""
    last_reasoning_only: bool = False
    """True: only the most recent assistant turn's reasoning reaches the model."""
    tool_results: ToolResults = "kept"
    """Whether tool results reach the model whole, cut short, or not at all."""
    escape_html: bool = False
    """True: every message's text is HTML-escaped before the model sees it."""
    hidden_system: str | None = None
    """A system prompt of the host's own, put before the client's."""
    reencode_arguments: bool = False
    """True: string arguments of earlier calls are JSON-encoded a second time."""


RequestHook = Callable[[FaultContext], Rejection | Stall | None]
SamplingHook = Callable[[Sampling], Sampling | None]
PromptHook = Callable[[PromptOptions], PromptOptions]
ReplyHook = Callable[[Reply, FaultContext], Reply | None]
StreamHook = Callable[[list[Chunk]], list[Chunk] | None]
"""Stream hooks may rewrite the chunks they are given in place (they own them)."""
WireHook = Callable[[Written], Written | None]


@dataclass(frozen=True, slots=True)
class FaultInfo:
    """A fault's catalogue entry."""

    name: str
    description: str
    blame: Blame


@dataclass(frozen=True, slots=True)
class RequestFault(FaultInfo):
    """Refuses or stalls the request before the model runs."""

    apply: RequestHook
    stage: ClassVar[Stage] = "request"


@dataclass(frozen=True, slots=True)
class SamplingFault(FaultInfo):
    """Drops one sampling parameter before the model runs: the host silently ignores it
    (reported when honouring the parameter would have changed the reply)."""

    apply: SamplingHook
    parameter: str
    """The parameter it drops, as `sampling.honour` names what it acted on."""
    stage: ClassVar[Stage] = "sampling"


@dataclass(frozen=True, slots=True)
class PromptFault(FaultInfo):
    """Changes how the host renders the history (reported when it changed the prompt)."""

    apply: PromptHook
    stage: ClassVar[Stage] = "prompt"


@dataclass(frozen=True, slots=True)
class ReplyFault(FaultInfo):
    """Rewrites the reply: calls, finish reason, reasoning, usage."""

    apply: ReplyHook
    stage: ClassVar[Stage] = "reply"


@dataclass(frozen=True, slots=True)
class StreamFault(FaultInfo):
    """Rewrites the streamed tool-call deltas."""

    apply: StreamHook
    stage: ClassVar[Stage] = "stream"


@dataclass(frozen=True, slots=True)
class WireFault(FaultInfo):
    """Rewrites the bytes of the response, or cuts the connection while they are written."""

    apply: WireHook
    stage: ClassVar[Stage] = "wire"


Fault = RequestFault | SamplingFault | PromptFault | ReplyFault | StreamFault | WireFault

"""The embedded simulator: a deterministic, seeded OpenAI-compatible endpoint on loopback.

`SimServer` serves it in-process (tests, `traces record` without a provider); `serve_forever`
backs the `traces sim` command. The policy decides from the request alone, so the server
holds no conversation state and any number of runs can share one instance.
"""

from traces.sim.config import ReasoningField, SimConfig
from traces.sim.policy import Decision, ToolCall, decide
from traces.sim.server import SimServer, serve_forever

__all__ = [
    "Decision",
    "ReasoningField",
    "SimConfig",
    "SimServer",
    "ToolCall",
    "decide",
    "serve_forever",
]

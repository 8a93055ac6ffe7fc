"""The embedded simulator: a deterministic, seeded OpenAI-compatible endpoint on loopback.

`SimServer` serves it in-process (tests, `traces record` without a provider); `serve_forever`
backs the `traces sim` command. The policy decides from the request alone, so the server
holds no conversation state and any number of runs can share one instance. `SimConfig`
picks the host to emulate (`traces.dialects`) and the faults to inject (`FAULTS`).
"""

from traces.sim.config import SimConfig
from traces.sim.faults import FAULTS
from traces.sim.policy import Decision, ToolCall, decide
from traces.sim.server import SimServer, serve_forever
from traces.sim.templates import TEMPLATES, template_for

__all__ = [
    "FAULTS",
    "TEMPLATES",
    "Decision",
    "SimConfig",
    "SimServer",
    "ToolCall",
    "decide",
    "serve_forever",
    "template_for",
]

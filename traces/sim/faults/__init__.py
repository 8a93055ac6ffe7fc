"""Faults the simulator injects on request, each at a seeded rate.

`FAULTS` is the catalogue (name, description, who to blame, the function that applies it);
`fired` picks the faults of one request. See `catalogue` for every name.
"""

from traces.sim.faults.base import (
    Blame,
    Fault,
    FaultContext,
    PromptFault,
    PromptOptions,
    Rejection,
    ReplyFault,
    RequestFault,
    SamplingFault,
    Stall,
    StreamFault,
    WireFault,
    Written,
)
from traces.sim.faults.catalogue import FAULTS
from traces.sim.faults.selection import AttemptCounter, conversation_key, fired, request_key

__all__ = [
    "FAULTS",
    "AttemptCounter",
    "Blame",
    "Fault",
    "FaultContext",
    "PromptFault",
    "PromptOptions",
    "Rejection",
    "ReplyFault",
    "RequestFault",
    "SamplingFault",
    "Stall",
    "StreamFault",
    "WireFault",
    "Written",
    "conversation_key",
    "fired",
    "request_key",
]

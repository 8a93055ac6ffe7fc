"""Which faults fire on a request: a pure function of (seed, fault name, request messages).

Identical requests therefore meet identical faults, and a rate of 0.3 fires on about 30% of
distinct requests. Two kinds are the exception. Transient faults (429, 5xx, timeouts, dropped
connections, cut, endless or empty responses): real hosts throw them at random, so a client's
retry must be able to succeed; they are keyed on the request *and* how many times this server
has already seen it, so each attempt rolls again. Faults in how the host renders the history
(`PER_CONVERSATION`): a host's template does not change mid-run, so they are keyed on the
conversation.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from traces.sim.faults.base import roll
from traces.sim.faults.catalogue import FAULTS

TRANSIENT = frozenset(
    {
        "rate_limit_429",
        "server_error_5xx",
        "timeout",
        "connection_reset",
        "stream_truncated",
        "endless_response",
        "empty_response",
    }
)
"""Faults that roll again on every attempt of the same request."""

_MAX_REMEMBERED = 100_000


class AttemptCounter:
    """How many times each request has been seen (bounded: the oldest keys are forgotten)."""

    def __init__(self) -> None:
        """Start with no request seen."""
        self._seen: OrderedDict[str, int] = OrderedDict()

    def next(self, key: str) -> int:
        """The attempt number of this sighting of `key` (0 the first time)."""
        attempt = self._seen.pop(key, -1) + 1
        self._seen[key] = attempt
        if len(self._seen) > _MAX_REMEMBERED:
            self._seen.popitem(last=False)
        return attempt


def request_key(messages: Sequence[Mapping[str, Any]]) -> str:
    """Digest of the messages as canonical JSON (key order does not matter)."""
    text = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


PER_CONVERSATION = frozenset(name for name, fault in FAULTS.items() if fault.stage == "prompt")
"""Faults in how the host renders the history: its template and proxies do not change in the
middle of a conversation, so they fire on every request of a conversation or on none (a rate
of 0.3 affects about 30% of conversations, each throughout)."""


def conversation_key(messages: Sequence[Mapping[str, Any]], seed: int | None = None) -> str:
    """Digest of what opens the conversation (its messages before the first assistant turn)
    and of the request's `seed`: the same on every request of a run, and different for runs
    of one task, which open alike but each with a seed of their own."""
    end = next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), len(messages))
    return request_key([*messages[:end], {"seed": seed}])


def fired(
    rates: Mapping[str, float], seed: int, key: str, attempt: int = 0, conversation: str = ""
) -> list[str]:
    """Names of the faults that fire for attempt `attempt` of request `key` (of the
    conversation `conversation`, by default the request alone), in order."""
    return [
        name
        for name in FAULTS
        if rates.get(name, 0.0) > 0.0
        and roll(seed, name, _roll_key(name, key, attempt, conversation)) < rates[name]
    ]


def _roll_key(name: str, key: str, attempt: int, conversation: str) -> str:
    if name in TRANSIENT:
        return f"{key}#{attempt}"
    if name in PER_CONVERSATION and conversation:
        return conversation
    return key

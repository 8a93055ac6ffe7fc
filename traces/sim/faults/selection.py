"""Which faults fire on a request: a pure function of (seed, fault name, request messages).

Identical requests therefore meet identical faults, and a rate of 0.3 fires on about 30% of
distinct requests. Only the messages are hashed, so a retry of the same request meets the
same fault again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from traces.sim.faults.base import roll
from traces.sim.faults.catalogue import FAULTS


def request_key(messages: Sequence[Mapping[str, Any]]) -> str:
    """Digest of the messages as canonical JSON (key order does not matter)."""
    text = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def fired(rates: Mapping[str, float], seed: int, key: str) -> list[str]:
    """Names of the faults that fire for the request `key`, in catalogue order."""
    return [
        name
        for name in FAULTS
        if rates.get(name, 0.0) > 0.0 and roll(seed, name, key) < rates[name]
    ]

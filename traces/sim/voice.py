"""Seeded wording for the simulated model's reasoning and answers.

The same (seed, turn, conversation) always yields the same words, different conversations
get different phrasings, so traces look varied without being random between runs.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence


class Voice:
    """A deterministic phrase picker for one turn."""

    def __init__(self, seed_material: str) -> None:
        """Seed the picker from any string (e.g. "seed:turn:conversation-hash")."""
        digest = hashlib.blake2b(seed_material.encode(), digest_size=8).digest()
        self.rng = random.Random(int.from_bytes(digest, "big"))

    def pick(self, options: Sequence[str], **values: object) -> str:
        """One of `options`, formatted with `values`."""
        return self.rng.choice(options).format(**values)

    def maybe(self, probability: float, options: Sequence[str], **values: object) -> str:
        """Like `pick`, but only with the given probability; "" otherwise."""
        if self.rng.random() >= probability:
            return ""
        return self.pick(options, **values)


def sentences(*parts: str) -> str:
    """Join non-empty sentences with single spaces."""
    return " ".join(part for part in parts if part)


def excerpt(text: str | None, limit: int = 120) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"

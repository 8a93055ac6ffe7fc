"""Prefix caching, as hosts with automatic prompt caching report it in `usage`.

vLLM, SGLang, DeepSeek and OpenAI keep the KV state of prompts they have served and reuse
the longest prefix a new prompt shares with one of them; usage then says how many prompt
tokens came from the cache. Inside a tool chain each request extends the previous one, so a
warm cache covers nearly the whole previous prompt — unless the host renders earlier history
differently from one request to the next (stripping older reasoning), which moves the point
where the prompts diverge back into the history and makes the cached count fall.

The simulator caches at turn granularity: the rendered segments (one per turn) are chained
into prefix keys, and the longest chain of keys already seen gives the cached tokens. The
generation prompt is never served from cache (hosts always compute the last tokens). Memory
is a bounded LRU of keys; one request costs one tuple hash and one dict lookup per turn.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from traces.dialects import Dialect

DEFAULT_CAPACITY = 200_000
"""Prefix keys remembered (about 100 bytes each): a few thousand conversations' turns."""

_HIT_MISS_DIALECTS = frozenset({"deepseek"})
"""Hosts reporting `prompt_cache_hit_tokens` / `prompt_cache_miss_tokens` at the top of
`usage` instead of OpenAI's `prompt_tokens_details.cached_tokens` (DeepSeek's API)."""


class PrefixCache:
    """The prompt prefixes one simulated host has served, oldest forgotten first."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        """Remember at most `capacity` prefix keys."""
        self.capacity = capacity
        self._seen: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        """Prefix keys remembered."""
        return len(self._seen)

    def serve(self, segments: Sequence[str], counts: Sequence[int]) -> int:
        """Tokens of the longest already-served prefix of the prompt `segments` (whose token
        counts are `counts`), then remember every prefix of this prompt."""
        seen = self._seen
        key = 0
        total = cached = 0
        hit = True
        # The last segment opens the generation: it is computed anew on every request.
        for segment, count in zip(segments[:-1], counts, strict=False):
            # Chaining the previous key makes each key stand for the whole prefix so far.
            key = hash((key, segment))
            total += count
            if key in seen:
                seen.move_to_end(key)
                if hit:
                    cached = total
            else:
                hit = False
                seen[key] = None
        while len(seen) > self.capacity:
            seen.popitem(last=False)
        return cached


def cache_usage(dialect: Dialect, prompt_tokens: int, cached: int) -> dict[str, Any]:
    """The usage fields that report `cached` prompt tokens the way `dialect`'s host does."""
    if dialect.name in _HIT_MISS_DIALECTS:
        return {
            "prompt_cache_hit_tokens": cached,
            "prompt_cache_miss_tokens": prompt_tokens - cached,
        }
    return {"prompt_tokens_details": {"cached_tokens": cached}}

"""Log probabilities of the simulated model's answer tokens, in OpenAI's shape.

The numbers are not a model's: they are a pure function of the token and its position, so a
response is byte-stable across runs, yet every token carries a plausible value (within
(-2.5, 0]) and `top_logprobs` alternatives ranked below it, as a real host reports them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from traces.sim.tokenizer import token_pieces

_ALTERNATIVES = (" the", " a", ",", ".", " and", " of", " to", " in", " is", " it", " that")
"""Stand-in tokens offered as the runners-up of each generated token."""


def _logprob(token: str, position: int) -> float:
    digest = hashlib.blake2b(f"{position}\x00{token}".encode(), digest_size=8).digest()
    return -round(int.from_bytes(digest, "big") / 2**64 * 2.5, 4)


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def logprob_entries(text: str, top: int) -> list[dict[str, Any]]:
    """`choices[].logprobs.content` for `text`: one entry per token piece (they join back into
    `text`), each with `top` alternatives, the generated token first (it was the likeliest)."""
    entries: list[dict[str, Any]] = []
    for position, token in enumerate(token_pieces(text)):
        logprob = _logprob(token, position)
        alternatives = [_entry(token, logprob)]
        for rank, other in enumerate(a for a in _ALTERNATIVES if a != token):
            if len(alternatives) >= top:
                break
            alternatives.append(_entry(other, round(logprob - 0.75 * (rank + 1), 4)))
        entries.append({**_entry(token, logprob), "top_logprobs": alternatives[:top]})
    return entries

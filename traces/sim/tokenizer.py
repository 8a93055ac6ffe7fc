"""A deterministic stand-in tokenizer, so usage numbers move like a real server's.

It is not any model's BPE; it only has to be stable, monotone in the text, and fast enough
to run over the whole rendered prompt of every request.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Order matters: special tokens and chat tags are tried first so they stay one token, as
# they do in the real vocabularies of every family the templates render. Digits come in
# groups of three like most BPE merges.
_TOKEN = re.compile(
    r"<\|[A-Za-z0-9_]{1,32}\|>"  # ChatML, Kimi, GLM, harmony: <|im_start|>, <|channel|>
    r"|<｜[^｜<>\s]{1,40}｜>"  # DeepSeek's full-width bars: <｜tool▁calls▁begin｜>
    r"|\]~!b\[|\]~b\]|\[e~\["  # MiniMax turn markers
    r"|\[gMASK\]|<sop>"  # GLM prefix
    r"|</?(?:think|tool_call|tool_response|tools|arg_key|arg_value|minimax:tool_call)>"
    r"|[^\W\d_]+"
    r"|\d{1,3}"
    r"|[^\w\s]|_"
)


def count_tokens(text: str) -> int:
    """Number of tokens in `text`: words, 1-3 digit runs, single punctuation, special tokens.

    Whitespace is never a token, and every special token (`<|im_start|>`) is a token on its
    own, so the count of a concatenation of chat-template turns equals the sum of the turns'
    counts. `count_tokens_cached` relies on that to count a prompt turn by turn.
    """
    return len(_TOKEN.findall(text))


@lru_cache(maxsize=1 << 16)
def count_tokens_cached(text: str) -> int:
    """`count_tokens` memoized; meant for rendered turns, which repeat on every later request.

    A 300-step conversation re-sends all earlier turns each step; hashing a turn is far
    cheaper than re-tokenizing it, which keeps the per-request cost close to linear in the
    new text instead of the whole history.
    """
    return count_tokens(text)


def token_ends(text: str) -> list[int]:
    """Where each token of `text` ends (character offsets), in order."""
    return [match.end() for match in _TOKEN.finditer(text)]


def cut_tokens(text: str, limit: int) -> str:
    """`text` up to the end of its first `limit` tokens (all of it when it has no more)."""
    if limit <= 0:
        return ""
    ends = token_ends(text)
    return text if len(ends) <= limit else text[: ends[limit - 1]]


def token_pieces(text: str) -> list[str]:
    """`text` split into one piece per token, each with the whitespace before it (as real
    tokenizers carry the leading space), the trailing whitespace on the last: the pieces join
    back into `text` exactly."""
    ends = token_ends(text)
    if not ends:
        return [text] if text else []
    ends[-1] = len(text)
    pieces, start = [], 0
    for end in ends:
        pieces.append(text[start:end])
        start = end
    return pieces

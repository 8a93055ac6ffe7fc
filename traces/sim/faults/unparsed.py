"""Faults of a host that runs no reasoning or harmony parser: the model's own markup reaches
the client in content.

gpt-oss served without the harmony parser hands over every channel (`<|channel|>analysis…`,
calls as `commentary to=functions.NAME` messages); a detokenizer that drops special tokens
leaves the bare words run together (`analysis…assistantfinal…`). A template that opens
`<think>` in the prompt leaves the model to write only `</think>`, which no parser took off.
"""

from __future__ import annotations

import re
from dataclasses import replace

from traces.sim.faults.base import FaultContext
from traces.sim.reply import Reply, history_calls
from traces.sim.templates.gpt_oss import GptOssTemplate

_HARMONY = GptOssTemplate()
_STOP_TOKENS = ("<|call|>", "<|return|>")
_SPECIAL = re.compile(r"<\|[a-z_]+\|>")


def _raw_harmony(reply: Reply) -> str:
    """The turn as gpt-oss generates it; the stop token that ended it is not text. A turn
    `max_tokens` cut ends where the budget ran out: mid-thought, no message closed after it."""
    text = _HARMONY.completion(reply.reasoning, reply.content, history_calls(reply.calls))
    for stop in _STOP_TOKENS:
        text = text.removesuffix(stop)
    if reply.finish_reason == "length" and not reply.content and reply.reasoning:
        text = text[: text.index(reply.reasoning) + len(reply.reasoning)]
    return text


def _unparsed_finish(reply: Reply) -> str:
    """The finish_reason a host without the parser sends: `stop` where the parser would have
    said `tool_calls`, but a cut stays `length`: the engine, not the parser, decides that."""
    return "length" if reply.finish_reason == "length" else "stop"


def harmony_in_content(reply: Reply, ctx: FaultContext) -> Reply | None:
    """No harmony parser: the raw channels (and calls as commentary messages) in content,
    no reasoning field, no tool_calls, finish_reason stop (`length` for a turn cut short)."""
    content = _raw_harmony(reply)
    return replace(
        reply, reasoning="", content=content, calls=(), finish_reason=_unparsed_finish(reply)
    )


def harmony_stripped(reply: Reply, ctx: FaultContext) -> Reply | None:
    """As `harmony_in_content`, through a detokenizer that skips special tokens: only the
    words are left (`analysisWe…assistantfinal…`). Turns with reasoning, whose channel name
    opens the text."""
    if not reply.reasoning:
        return None
    content = _SPECIAL.sub("", _raw_harmony(reply))
    return replace(
        reply, reasoning="", content=content, calls=(), finish_reason=_unparsed_finish(reply)
    )


def reasoning_close_tag_only(reply: Reply, ctx: FaultContext) -> Reply | None:
    """The template opened `<think>` in the prompt and no reasoning parser ran: content holds
    the reasoning, a lone `</think>`, then the answer; calls are still parsed."""
    if not reply.reasoning:
        return None
    content = f"{reply.reasoning}\n</think>\n\n{reply.content}"
    return replace(reply, reasoning="", content=content)

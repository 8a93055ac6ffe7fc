"""The simulator's own chat template (ChatML-like), written in Python.

It mirrors what matters in the thinking models' real templates (Qwen3, MiniMax M2, Kimi K2
Thinking): reasoning of assistant turns after the last user message is rendered (interleaved
thinking inside the current tool chain), earlier turns' reasoning is dropped, and reasoning
is read only from where the dialect puts it. A client that sends reasoning back in the wrong
field therefore gets a smaller prompt, exactly as it would from a real server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from traces.sim.config import ReasoningField

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
GENERATION_PROMPT = f"{IM_START}assistant\n"

_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"


def message_text(content: Any) -> str:
    """Text of a message `content`: a string, None, or a list of `{"type": "text"}` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return str(content)


def split_think(content: str) -> tuple[str | None, str]:
    """Split a leading `<think>...</think>` block off `content`: (reasoning or None, rest)."""
    stripped = content.lstrip()
    if not stripped.startswith(_THINK_OPEN):
        return None, content
    end = stripped.find(_THINK_CLOSE)
    if end < 0:
        # An unterminated block is all reasoning; the model never reached its answer.
        return stripped[len(_THINK_OPEN) :].strip(), ""
    reasoning = stripped[len(_THINK_OPEN) : end].strip()
    return reasoning, stripped[end + len(_THINK_CLOSE) :].lstrip()


def assistant_reasoning(message: Mapping[str, Any], field: ReasoningField) -> str | None:
    """Reasoning of an assistant message as the given dialect reads it (None when absent)."""
    if field == "think":
        return split_think(message_text(message.get("content")))[0] or None
    value = message.get(field)
    return value if isinstance(value, str) and value else None


@lru_cache(maxsize=1024)
def _quoted(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


def render_tool_call(name: str, arguments: Any) -> str:
    """One `<tool_call>` block; string arguments are inserted verbatim, as Qwen3's template does."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    quoted = _quoted(name)
    return f'<tool_call>\n{{"name": {quoted}, "arguments": {args}}}\n</tool_call>'


def render_assistant_body(
    reasoning: str | None, content: str, calls: Iterable[tuple[str, Any]]
) -> str:
    """What the model generates for one assistant turn, up to and including `<|im_end|>`.

    Used both for history turns and to count completion tokens, so both agree.
    """
    parts: list[str] = []
    if reasoning:
        parts.append(f"{_THINK_OPEN}\n{reasoning}\n{_THINK_CLOSE}\n\n")
    parts.append(content)
    blocks = [render_tool_call(name, args) for name, args in calls]
    if blocks:
        if content:
            parts.append("\n")
        parts.append("\n".join(blocks))
    parts.append(IM_END)
    return "".join(parts)


def _tool_calls_of(message: Mapping[str, Any]) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []
    raw = message.get("tool_calls")
    if not isinstance(raw, list):
        return calls
    # Plain dict checks: request bodies are decoded JSON, and ABC isinstance checks are slow
    # in a loop that runs over every turn of every request.
    for call in raw:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            calls.append((str(function.get("name", "")), function.get("arguments", "")))
    return calls


def _tools_block(tools: Sequence[Mapping[str, Any]]) -> str:
    lines = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    return (
        "# Tools\n\nYou may call one or more functions. Their signatures:\n"
        f"<tools>\n{lines}\n</tools>\n\n"
        'Call a function with <tool_call>{"name": ..., "arguments": {...}}</tool_call>.'
    )


def _last_user_index(messages: Sequence[Mapping[str, Any]]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    return -1


def render_segments(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
    reasoning_field: ReasoningField,
) -> list[str]:
    """The rendered prompt as one string per turn (plus the generation prompt at the end).

    Every segment starts with a special token, so tokens never straddle two segments and a
    prompt can be counted segment by segment (see `tokenizer.count_tokens_cached`).
    Linear in the conversation: one backward scan for the last user turn, one forward pass.
    """
    last_user = _last_user_index(messages)
    segments: list[str] = []
    start = 0
    if tools:
        system = ""
        if messages and messages[0].get("role") in ("system", "developer"):
            system = message_text(messages[0].get("content")) + "\n\n"
            start = 1
        segments.append(f"{IM_START}system\n{system}{_tools_block(tools)}{IM_END}\n")
    for index in range(start, len(messages)):
        message = messages[index]
        role = str(message.get("role", "user"))
        if role == "assistant":
            content = message_text(message.get("content"))
            reasoning = None
            if reasoning_field == "think":
                # The think block lives in content: it is moved into place when kept and
                # stripped when dropped, never rendered twice.
                think, content = split_think(content)
                if index > last_user:
                    reasoning = think
            elif index > last_user:
                reasoning = assistant_reasoning(message, reasoning_field)
            body = render_assistant_body(reasoning, content, _tool_calls_of(message))
            segments.append(f"{IM_START}assistant\n{body}\n")
        else:
            text = message_text(message.get("content"))
            segments.append(f"{IM_START}{role}\n{text}{IM_END}\n")
    segments.append(GENERATION_PROMPT)
    return segments


def render_prompt(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
    reasoning_field: ReasoningField,
) -> str:
    """The full prompt the simulated model sees, ending with the assistant generation prompt."""
    return "".join(render_segments(messages, tools, reasoning_field))

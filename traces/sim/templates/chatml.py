"""The simulator's generic ChatML template (the "chatml" family).

Shaped like the thinking models' ChatML templates: `<|im_start|>role ... <|im_end|>` turns,
tool declarations in the system turn, reasoning as a `<think>` block and calls as
`<tool_call>` JSON blocks inside the assistant turn, tool results as `tool` turns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, ClassVar

from traces.families import TemplateFamily
from traces.sim.templates.base import AssistantTurn, ChatTemplate, ToolTurn
from traces.sim.templates.history import HistoryCall, arguments_text

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"


@lru_cache(maxsize=1024)
def _quoted(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)


def tool_call_block(name: str, arguments: Any) -> str:
    """One `<tool_call>` block; string arguments are inserted verbatim, as Qwen3's template does."""
    return (
        f'<tool_call>\n{{"name": {_quoted(name)}, "arguments": {arguments_text(arguments)}}}'
        "\n</tool_call>"
    )


def tools_lines(tools: Sequence[Mapping[str, Any]]) -> str:
    """One JSON declaration per line."""
    return "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)


class ChatMLTemplate(ChatTemplate):
    """Generic ChatML with `<think>` reasoning and `<tool_call>` JSON blocks."""

    family: ClassVar[TemplateFamily] = "chatml"
    name_tag: ClassVar[str] = "</tool_call>"
    key_tag: ClassVar[str] = "</tool_call>"

    def tools_block(self, tools: Sequence[Mapping[str, Any]]) -> str:
        """The tool declarations and calling convention, inside the system turn."""
        return (
            "# Tools\n\nYou may call one or more functions. Their signatures:\n"
            f"<tools>\n{tools_lines(tools)}\n</tools>\n\n"
            'Call a function with <tool_call>{"name": ..., "arguments": {...}}</tool_call>.'
        )

    def header(self, system: str | None, tools: Sequence[Mapping[str, Any]]) -> str:
        """System turn with the tools appended; nothing when there is neither."""
        if not tools:
            return "" if system is None else f"{IM_START}system\n{system}{IM_END}\n"
        prefix = f"{system}\n\n" if system is not None else ""
        return f"{IM_START}system\n{prefix}{self.tools_block(tools)}{IM_END}\n"

    def system(self, text: str) -> str:
        """A later system turn."""
        return f"{IM_START}system\n{text}{IM_END}\n"

    def user(self, text: str) -> str:
        """A user turn."""
        return f"{IM_START}user\n{text}{IM_END}\n"

    def assistant(self, turn: AssistantTurn) -> str:
        """An assistant turn: think block (when kept), content, call blocks."""
        body = self.completion(turn.reasoning or "", turn.content, turn.calls)
        return f"{IM_START}assistant\n{body}\n"

    def tool(self, turn: ToolTurn) -> str:
        """A `tool` turn per result."""
        return f"{IM_START}tool\n{turn.text}{IM_END}\n"

    def generation_prompt(self, after: str | None) -> str:
        """Opens the assistant turn."""
        return f"{IM_START}assistant\n"

    def completion(self, reasoning: str, content: str, calls: Sequence[HistoryCall]) -> str:
        """What the model generates, up to and including `<|im_end|>`."""
        parts: list[str] = []
        if reasoning:
            parts.append(f"<think>\n{reasoning}\n</think>\n\n")
        parts.append(content)
        if calls:
            if content:
                parts.append("\n")
            parts.append(self.calls_text(calls))
        parts.append(IM_END)
        return "".join(parts)

    def calls_text(self, calls: Sequence[HistoryCall]) -> str:
        """`<tool_call>` blocks, one per line."""
        return "\n".join(tool_call_block(call.name, call.arguments) for call in calls)

"""Qwen3's hybrid-thinking ChatML (the "qwen" family; vLLM, SGLang and llama.cpp serve it).

Differs from plain ChatML where Qwen3 does: tool results travel inside a `user` turn as
`<tool_response>` blocks, consecutive results sharing one turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from traces.families import TemplateFamily
from traces.sim.templates.base import ToolTurn
from traces.sim.templates.chatml import IM_END, IM_START, ChatMLTemplate, tools_lines


class QwenTemplate(ChatMLTemplate):
    """Qwen3: ChatML, `<tool_call>` JSON, `<think>` reasoning, `<tool_response>` results."""

    family: ClassVar[TemplateFamily] = "qwen"

    def tools_block(self, tools: Sequence[Mapping[str, Any]]) -> str:
        """Declarations inside `<tools>` and the JSON calling convention."""
        return (
            "# Tools\n\nFunctions you can call to help with the request are declared inside "
            f"<tools></tools>:\n<tools>\n{tools_lines(tools)}\n</tools>\n\n"
            "To call one, answer with a JSON object holding its name and arguments inside "
            '<tool_call></tool_call> tags:\n<tool_call>\n{"name": <function-name>, '
            '"arguments": <args-json-object>}\n</tool_call>'
        )

    def tool(self, turn: ToolTurn) -> str:
        """A `<tool_response>` block; a run of results shares one user turn."""
        opening = f"{IM_START}user" if turn.first else ""
        closing = f"{IM_END}\n" if turn.last else ""
        return f"{opening}\n<tool_response>\n{turn.text}\n</tool_response>{closing}"

"""MiniMax M2 (the "minimax" family).

Turns open with `]~b]ROLE` (the first with `]~!b[`) and close with `[e~[`; the assistant role
is `ai`. Calls are XML: `<minimax:tool_call>` holding `<invoke name=…>` with one
`<parameter name=…>` per argument. Consecutive tool results share one `tool` turn as
`<response>` blocks. Reasoning is a `<think>` block kept after the last user message; the
generation prompt already opens it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from traces.families import TemplateFamily
from traces.sim.templates.base import AssistantTurn, ChatTemplate, ToolTurn
from traces.sim.templates.history import HistoryCall, arguments_items, arguments_text

BEGIN = "]~b]"
FIRST = "]~!b["
END = "[e~["
CALL_OPEN = "<minimax:tool_call>"
CALL_CLOSE = "</minimax:tool_call>"
_DEFAULT_SYSTEM = "You are a helpful assistant."


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _invoke(call: HistoryCall) -> str:
    arguments = arguments_items(call.arguments)
    if arguments is None:
        # Not an object: MiniMax's own template would fail; show the text as the model wrote it.
        body = arguments_text(call.arguments) + "\n"
    else:
        body = "".join(
            f'<parameter name="{key}">{_value(value)}</parameter>\n' for key, value in arguments
        )
    return f'<invoke name="{call.name}">\n{body}</invoke>\n'


class MiniMaxTemplate(ChatTemplate):
    """MiniMax M2's token format."""

    family: ClassVar[TemplateFamily] = "minimax"
    name_tag: ClassVar[str] = '">'
    key_tag: ClassVar[str] = '">'

    def header(self, system: str | None, tools: Sequence[Mapping[str, Any]]) -> str:
        """The system turn, with the tool declarations and the XML calling convention."""
        text = _DEFAULT_SYSTEM if system is None else system
        if tools:
            declared = "".join(
                f"<tool>{json.dumps(tool.get('function', tool), ensure_ascii=False)}</tool>\n"
                for tool in tools
            )
            text += (
                "\n\n# Tools\nThese tools are available, described in JSON Schema:\n\n"
                f"<tools>\n{declared}</tools>\n\n"
                f"Call tools in this XML form:\n{CALL_OPEN}\n"
                '<invoke name="tool-name">\n<parameter name="key">value</parameter>\n'
                f"</invoke>\n{CALL_CLOSE}"
            )
        return f"{FIRST}{BEGIN}system\n{text}{END}\n"

    def system(self, text: str) -> str:
        """A later system turn."""
        return f"{BEGIN}system\n{text}{END}\n"

    def user(self, text: str) -> str:
        """A user turn."""
        return f"{BEGIN}user\n{text}{END}\n"

    def assistant(self, turn: AssistantTurn) -> str:
        """An `ai` turn: think block when kept, content, the XML calls."""
        think = f"<think>\n{turn.reasoning}\n</think>\n\n" if turn.reasoning else ""
        return f"{BEGIN}ai\n{think}{self._body(turn.content, turn.calls)}\n"

    def tool(self, turn: ToolTurn) -> str:
        """A `<response>` block; a run of results shares one `tool` turn."""
        opening = f"{BEGIN}tool" if turn.first else ""
        closing = f"{END}\n" if turn.last else ""
        return f"{opening}\n<response>{turn.text}</response>{closing}"

    def generation_prompt(self, after: str | None) -> str:
        """Opens the `ai` turn and its think block."""
        return f"{BEGIN}ai\n<think>\n"

    def completion(self, reasoning: str, content: str, calls: Sequence[HistoryCall]) -> str:
        """Generated after the opening `<think>`: reasoning, `</think>`, answer or calls."""
        return f"{reasoning}\n</think>\n\n" + self._body(content, calls)

    def _body(self, content: str, calls: Sequence[HistoryCall]) -> str:
        calls_part = "\n" + self.calls_text(calls) if calls else ""
        return content + calls_part + END

    def calls_text(self, calls: Sequence[HistoryCall]) -> str:
        """One `<minimax:tool_call>` block holding an `<invoke>` per call."""
        return f"{CALL_OPEN}\n" + "".join(_invoke(call) for call in calls) + CALL_CLOSE

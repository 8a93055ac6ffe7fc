"""GLM-4.5 / 4.6 / 4.7 (the "glm" family).

`[gMASK]<sop>` then `<|system|>` / `<|user|>` / `<|assistant|>` / `<|observation|>` turns with
no closing token. Calls are `<tool_call>NAME` followed by `<arg_key>`/`<arg_value>` pairs;
every assistant turn carries a think block, filled only after the last user message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from traces.families import TemplateFamily
from traces.sim.templates.base import AssistantTurn, ChatTemplate, ToolTurn
from traces.sim.templates.history import HistoryCall, arguments_items, arguments_text


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _call(call: HistoryCall) -> str:
    arguments = arguments_items(call.arguments)
    if arguments is None:
        # GLM's template refuses non-object arguments; keep the model's text visible instead.
        pairs = f"\n{arguments_text(call.arguments)}"
    else:
        pairs = "".join(
            f"\n<arg_key>{key}</arg_key>\n<arg_value>{_value(value)}</arg_value>"
            for key, value in arguments
        )
    return f"\n<tool_call>{call.name}{pairs}\n</tool_call>"


class GLMTemplate(ChatTemplate):
    """GLM-4.6's token format."""

    family: ClassVar[TemplateFamily] = "glm"
    name_tag: ClassVar[str] = "</tool_call>"
    key_tag: ClassVar[str] = "</arg_key>"

    def header(self, system: str | None, tools: Sequence[Mapping[str, Any]]) -> str:
        """The prefix, a tools system turn, then the first system message."""
        parts = ["[gMASK]<sop>"]
        if tools:
            declared = "".join(json.dumps(tool, ensure_ascii=False) + "\n" for tool in tools)
            parts.append(
                "<|system|>\n# Tools\n\nFunctions you may call are declared inside "
                f"<tools></tools>:\n<tools>\n{declared}</tools>\n\n"
                "Write each call as its name followed by key/value pairs:\n"
                "<tool_call>{function-name}\n<arg_key>{key}</arg_key>\n"
                "<arg_value>{value}</arg_value>\n</tool_call>"
            )
        if system is not None:
            parts.append(self.system(system))
        return "".join(parts)

    def system(self, text: str) -> str:
        """A system turn."""
        return f"<|system|>\n{text}"

    def user(self, text: str) -> str:
        """A user turn."""
        return f"<|user|>\n{text}"

    def assistant(self, turn: AssistantTurn) -> str:
        """Think block (empty when dropped), content, calls."""
        return "<|assistant|>" + self.completion(turn.reasoning or "", turn.content, turn.calls)

    def tool(self, turn: ToolTurn) -> str:
        """A `<tool_response>`; a run of results follows one `<|observation|>`."""
        opening = "<|observation|>" if turn.first else ""
        return f"{opening}\n<tool_response>\n{turn.text}\n</tool_response>"

    def generation_prompt(self, after: str | None) -> str:
        """Opens the assistant turn."""
        return "<|assistant|>"

    def completion(self, reasoning: str, content: str, calls: Sequence[HistoryCall]) -> str:
        """Think block, the stripped content, the calls."""
        text = content.strip()
        body = f"\n{text}" if text else ""
        return f"\n<think>{reasoning.strip()}</think>{body}{self.calls_text(calls)}"

    def calls_text(self, calls: Sequence[HistoryCall]) -> str:
        """`<tool_call>` blocks with `<arg_key>`/`<arg_value>` pairs."""
        return "".join(_call(call) for call in calls)

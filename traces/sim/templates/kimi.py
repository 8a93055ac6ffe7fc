"""Kimi K2 / K2 Thinking (the "kimi" family).

Turns are `<|im_user|>` / `<|im_assistant|>` / `<|im_system|>` + name + `<|im_middle|>`, tools
are declared in a `tool_declare` system turn, calls live in a `<|tool_calls_section_begin|>`
section and, unlike other families, the call ids are part of the prompt (`functions.NAME:IDX`
in Kimi's own style), as are the ids tool results answer. Reasoning follows the K2 Thinking
rule: kept for every turn after the last assistant answer without tool calls, and rendered as
an empty `<think></think>` elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from traces.families import TemplateFamily
from traces.sim.templates.base import AssistantTurn, Boundary, ChatTemplate, ToolTurn
from traces.sim.templates.history import HistoryCall, arguments_text

_END = "<|im_end|>"
_DEFAULT_SYSTEM = "You are Kimi, an assistant built by Moonshot AI."


class KimiTemplate(ChatTemplate):
    """Kimi K2 Thinking's token format."""

    family: ClassVar[TemplateFamily] = "kimi"
    boundary: ClassVar[Boundary] = "last_final_answer"
    name_tag: ClassVar[str] = "<|tool_call_end|>"
    key_tag: ClassVar[str] = "<|tool_call_argument_begin|>"

    def header(self, system: str | None, tools: Sequence[Mapping[str, Any]]) -> str:
        """Tool declarations as one JSON array, then the system turn (a default if absent)."""
        declared = ""
        if tools:
            declared = (
                f"<|im_system|>tool_declare<|im_middle|>"
                f"{json.dumps(list(tools), ensure_ascii=False)}{_END}"
            )
        return declared + self.system(_DEFAULT_SYSTEM if system is None else system)

    def system(self, text: str) -> str:
        """A system turn."""
        return f"<|im_system|>system<|im_middle|>{text}{_END}"

    def user(self, text: str) -> str:
        """A user turn."""
        return f"<|im_user|>user<|im_middle|>{text}{_END}"

    def assistant(self, turn: AssistantTurn) -> str:
        """`<think>` (empty when dropped), content, the call section."""
        body = self.completion(turn.reasoning or "", turn.content, turn.calls)
        return f"<|im_assistant|>assistant<|im_middle|>{body}"

    def tool(self, turn: ToolTurn) -> str:
        """A result turn quoting the call id it answers, named by the message's own `name`.

        Like K2's template: a result without `name` (OpenAI clients send none) is a `tool`
        turn, even when the function could be found by its call id.
        """
        name = turn.name if turn.named else "tool"
        return f"<|im_system|>{name}<|im_middle|>## Return of {turn.call_id}\n{turn.text}{_END}"

    def generation_prompt(self, after: str | None) -> str:
        """Opens the assistant turn."""
        return "<|im_assistant|>assistant<|im_middle|>"

    def completion(self, reasoning: str, content: str, calls: Sequence[HistoryCall]) -> str:
        """What the model generates, up to and including `<|im_end|>`."""
        section = self.calls_text(calls) if calls else ""
        return f"<think>{reasoning}</think>{content}{section}{_END}"

    def calls_text(self, calls: Sequence[HistoryCall]) -> str:
        """The call section: each call's id, then its JSON arguments."""
        inner = "".join(
            f"<|tool_call_begin|>{call.id}<|tool_call_argument_begin|>"
            f"{arguments_text(call.arguments)}<|tool_call_end|>"
            for call in calls
        )
        return f"<|tool_calls_section_begin|>{inner}<|tool_calls_section_end|>"

    def leaked_name(self, name: str, call_id: str) -> str:
        """Kimi parsers that split on the wrong delimiter report the whole call id as name."""
        return call_id if call_id.startswith("functions.") else f"functions.{name}:0"

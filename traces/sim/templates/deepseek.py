"""DeepSeek V3.x in thinking mode (the "deepseek" family).

V3.1's token format: `<｜User｜>` / `<｜Assistant｜>` turns after a `<｜begin▁of▁sentence｜>`
system prefix, calls as `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS
<｜tool▁call▁end｜>…`, results as `<｜tool▁output▁begin｜>…<｜tool▁output▁end｜>`. Reasoning
follows the thinking-mode API (and V3.2's encoder): `<think>…</think>` is kept for assistant
turns after the last user message; earlier turns only close an empty think block.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from traces.families import TemplateFamily
from traces.sim.templates.base import AssistantTurn, ChatTemplate, ToolTurn
from traces.sim.templates.history import HistoryCall, arguments_text

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"
OUTPUT_BEGIN = "<｜tool▁output▁begin｜>"
OUTPUT_END = "<｜tool▁output▁end｜>"


def _tools_section(tools: Sequence[Mapping[str, Any]]) -> str:
    described: list[str] = []
    for tool in tools:
        function = tool.get("function")
        if not isinstance(function, Mapping):
            continue
        parameters = json.dumps(function.get("parameters", {}), ensure_ascii=False)
        described.append(
            f"### {function.get('name', '')}\n"
            f"Description: {function.get('description', '')}\n\nParameters: {parameters}\n"
        )
    return (
        "\n\n## Tools\nThese tools are available:\n\n"
        + "\n".join(described)
        + f"\nCall them in exactly this form:\n{CALLS_BEGIN}{CALL_BEGIN}name{SEP}arguments"
        f"{CALL_END}{CALLS_END}\nwhere arguments is a JSON object.\n"
    )


class DeepSeekTemplate(ChatTemplate):
    """DeepSeek V3.1 token format with thinking-mode reasoning."""

    family: ClassVar[TemplateFamily] = "deepseek"
    name_tag: ClassVar[str] = SEP
    key_tag: ClassVar[str] = CALL_END

    def header(self, system: str | None, tools: Sequence[Mapping[str, Any]]) -> str:
        """BOS, the system text, then the tools section."""
        return BOS + (system or "") + (_tools_section(tools) if tools else "")

    def system(self, text: str) -> str:
        """A later system message: DeepSeek has no role for it, the text joins the prompt."""
        return f"\n\n{text}"

    def user(self, text: str) -> str:
        """A user turn."""
        return USER + text

    def assistant(self, turn: AssistantTurn) -> str:
        """After a user turn `<｜Assistant｜>` opens it; after tool output it just goes on."""
        opening = ASSISTANT if turn.after not in ("tool", "function") else ""
        think = f"<think>{turn.reasoning}</think>" if turn.reasoning else "</think>"
        return opening + think + self._body(turn.content, turn.calls)

    def tool(self, turn: ToolTurn) -> str:
        """One output block per result."""
        return f"{OUTPUT_BEGIN}{turn.text}{OUTPUT_END}"

    def generation_prompt(self, after: str | None) -> str:
        """Opens a think block (after a user turn also the assistant turn)."""
        return ("" if after in ("tool", "function") else ASSISTANT) + "<think>"

    def completion(self, reasoning: str, content: str, calls: Sequence[HistoryCall]) -> str:
        """Generated after the opening `<think>`: reasoning, `</think>`, answer or calls."""
        return f"{reasoning}</think>" + self._body(content, calls)

    def _body(self, content: str, calls: Sequence[HistoryCall]) -> str:
        return content + (self.calls_text(calls) if calls else "") + EOS

    def calls_text(self, calls: Sequence[HistoryCall]) -> str:
        """The calls block: name, separator, JSON arguments per call."""
        inner = "".join(
            f"{CALL_BEGIN}{call.name}{SEP}{arguments_text(call.arguments)}{CALL_END}"
            for call in calls
        )
        return f"{CALLS_BEGIN}{inner}{CALLS_END}"

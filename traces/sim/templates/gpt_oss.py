"""gpt-oss in the harmony format (the "gpt-oss" family).

Every message is `<|start|>ROLE<|channel|>CHANNEL<|message|>TEXT<|end|>`: reasoning on the
`analysis` channel, answers on `final`, calls as `assistant to=functions.NAME` messages on
`commentary` ending with `<|call|>`, results from `functions.NAME to=assistant`. As in the
gpt-oss template, analysis is kept only for tool-call turns after the last final answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from traces.families import TemplateFamily
from traces.sim.templates.base import AssistantTurn, Boundary, ChatTemplate, ToolTurn
from traces.sim.templates.history import HistoryCall, arguments_text

START = "<|start|>"
END = "<|end|>"
MESSAGE = "<|message|>"
CHANNEL = "<|channel|>"
_SYSTEM = (
    "You are a helpful reasoning model.\nReasoning: medium\n\n"
    "# Valid channels: analysis, commentary, final. Every message names its channel."
)


def analysis(reasoning: str) -> str:
    """An analysis message body (without the leading `<|start|>assistant`)."""
    return f"{CHANNEL}analysis{MESSAGE}{reasoning}{END}"


def final(content: str) -> str:
    """A final-channel message body (without the leading `<|start|>assistant`)."""
    return f"{CHANNEL}final{MESSAGE}{content}"


def _namespace(tools: Sequence[Mapping[str, Any]]) -> str:
    entries: list[str] = []
    for tool in tools:
        function = tool.get("function")
        if isinstance(function, Mapping):
            parameters = json.dumps(function.get("parameters", {}), ensure_ascii=False)
            entries.append(
                f"// {function.get('description', '')}\n"
                f"type {function.get('name', '')} = (_: {parameters}) => any;\n"
            )
    return "## functions\n\nnamespace functions {\n\n" + "\n".join(entries) + "\n} // namespace"


class GptOssTemplate(ChatTemplate):
    """The harmony format of gpt-oss."""

    family: ClassVar[TemplateFamily] = "gpt-oss"
    boundary: ClassVar[Boundary] = "last_final_answer"
    name_tag: ClassVar[str] = "<|channel|>commentary"
    key_tag: ClassVar[str] = "<|message|>"

    def header(self, system: str | None, tools: Sequence[Mapping[str, Any]]) -> str:
        """The system message, then a developer message with instructions and tools."""
        head = f"{START}system{MESSAGE}{_SYSTEM}"
        if tools:
            head += "\nCalls to these tools must go to the commentary channel: 'functions'."
        head += END
        sections = []
        if system is not None:
            sections.append(f"# Instructions\n\n{system}")
        if tools:
            sections.append(f"# Tools\n\n{_namespace(tools)}")
        if sections:
            head += f"{START}developer{MESSAGE}" + "\n\n".join(sections) + END
        return head

    def system(self, text: str) -> str:
        """A later system or developer message."""
        return f"{START}developer{MESSAGE}{text}{END}"

    def user(self, text: str) -> str:
        """A user message."""
        return f"{START}user{MESSAGE}{text}{END}"

    def assistant(self, turn: AssistantTurn) -> str:
        """Analysis (when kept), a commentary preamble or final answer, the calls."""
        parts: list[str] = []
        if turn.reasoning and turn.calls:
            parts.append(START + "assistant" + analysis(turn.reasoning))
        if turn.calls:
            if turn.content:
                parts.append(f"{START}assistant{CHANNEL}commentary{MESSAGE}{turn.content}{END}")
            parts.append(self.calls_text(turn.calls))
        else:
            parts.append(START + "assistant" + final(turn.content) + END)
        return "".join(parts)

    def tool(self, turn: ToolTurn) -> str:
        """A result message from the function to the assistant."""
        return (
            f"{START}functions.{turn.name} to=assistant{CHANNEL}commentary{MESSAGE}{turn.text}{END}"
        )

    def generation_prompt(self, after: str | None) -> str:
        """Opens an assistant message (the model picks the channel)."""
        return f"{START}assistant"

    def completion(self, reasoning: str, content: str, calls: Sequence[HistoryCall]) -> str:
        """Analysis, then calls ending in `<|call|>` or a final answer ending in `<|return|>`."""
        rest = self.calls_text(calls) if calls else f"{START}assistant{final(content)}<|return|>"
        if reasoning:
            return analysis(reasoning) + rest
        # The generation prompt already opened the first message.
        return rest[len(START + "assistant") :]

    def calls_text(self, calls: Sequence[HistoryCall]) -> str:
        """One commentary message per call, addressed to the function."""
        return "".join(
            f"{START}assistant to=functions.{call.name}{CHANNEL}commentary json{MESSAGE}"
            f"{arguments_text(call.arguments)}<|call|>"
            for call in calls
        )

"""What every family chat template shares: the walk over the conversation.

A family template only says how each kind of turn looks in its token format; the walk
decides which reasoning survives (the family's boundary rule and the dialect's reasoning
locations) and emits one segment per turn. Every segment begins and ends on a token
boundary (a special token, a newline or punctuation), so the prompt can be counted segment
by segment and a long conversation costs one cached lookup per earlier turn.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from traces.families import TemplateFamily
from traces.sim.templates.history import (
    HistoryCall,
    calls_of,
    last_assistant_index,
    last_final_answer_index,
    last_user_index,
    message_text,
    read_reasoning,
)
from traces.wire_forms import ReasoningLocation

Boundary = Literal["last_user", "last_final_answer"]
"""Which earlier reasoning a family keeps: turns after the last user message (Qwen3, MiniMax,
GLM, DeepSeek), or turns after the last assistant answer without tool calls (Kimi K2
Thinking, gpt-oss)."""

_TOOL_ROLES = frozenset({"tool", "function"})
_SYSTEM_ROLES = frozenset({"system", "developer"})


# Turn records are built for every message of every request: plain slotted dataclasses,
# because frozen ones pay for object.__setattr__ on each field and double the render time.
@dataclass(slots=True)
class AssistantTurn:
    """An assistant message as the template renders it."""

    reasoning: str | None
    """Reasoning to render; None when the template drops it (or none was read)."""
    content: str
    calls: Sequence[HistoryCall]
    after: str | None
    """Role of the message before it (None when it opens the conversation)."""


@dataclass(slots=True)
class ToolTurn:
    """A tool result as the template renders it."""

    text: str
    call_id: str
    name: str
    """Function name of the call it answers (from `name`, else found by `tool_call_id`)."""
    named: bool
    """Whether the message carried `name` itself (Kimi's template renders only that one)."""
    first: bool
    """First of a run of consecutive tool results (families open a block there)."""
    last: bool
    """Last of such a run (families close the block there)."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """A rendered prompt: one segment per turn, and what happened to history reasoning."""

    segments: list[str]
    reasoning_kept: int
    """Assistant turns whose reasoning was rendered."""
    reasoning_suppressed: int
    """Turns whose reasoning would have been rendered but `history_reasoning` was off."""

    @property
    def text(self) -> str:
        """The whole prompt."""
        return "".join(self.segments)


class ChatTemplate(ABC):
    """A family's chat template: token format of each turn plus the shared walk."""

    family: ClassVar[TemplateFamily]
    boundary: ClassVar[Boundary] = "last_user"
    name_tag: ClassVar[str]
    """A closing tag of the family's call format; a sloppy parser leaves it in a name."""
    key_tag: ClassVar[str]
    """A tag of the family's argument format; a sloppy parser leaves it in a key."""

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
        reasoning_in: Sequence[ReasoningLocation],
        *,
        history_reasoning: bool = True,
        last_reasoning_only: bool = False,
    ) -> Prompt:
        """Render `messages` ending with the generation prompt, reading reasoning only from
        `reasoning_in`; `history_reasoning=False` renders no earlier reasoning at all (a
        host that strips it), `last_reasoning_only=True` only the latest assistant turn's.
        Linear: backward scans for the boundary (and the latest turn), one forward pass.
        """
        boundary = (
            last_user_index(messages)
            if self.boundary == "last_user"
            else last_final_answer_index(messages)
        )
        latest = last_assistant_index(messages) if last_reasoning_only else -1
        start, system = 0, None
        if messages and messages[0].get("role") in _SYSTEM_ROLES:
            start, system = 1, message_text(messages[0].get("content"))
        segments = [self.header(system, tools or ())]
        kept = suppressed = 0
        names: dict[str, str] = {}
        previous: str | None = None
        count = len(messages)
        for index in range(start, count):
            message = messages[index]
            role = str(message.get("role", "user"))
            if role == "assistant":
                reasoning, content = read_reasoning(message, reasoning_in)
                if index <= boundary:
                    reasoning = None
                elif reasoning and (
                    not history_reasoning or (last_reasoning_only and index != latest)
                ):
                    reasoning, suppressed = None, suppressed + 1
                elif reasoning:
                    kept += 1
                calls = calls_of(message)
                for call in calls:
                    names[call.id] = call.name
                segments.append(self.assistant(AssistantTurn(reasoning, content, calls, previous)))
            elif role in _TOOL_ROLES:
                call_id = str(message.get("tool_call_id") or "")
                name = message.get("name")
                following = messages[index + 1].get("role") if index + 1 < count else None
                turn = ToolTurn(
                    text=message_text(message.get("content")),
                    call_id=call_id,
                    name=name if isinstance(name, str) and name else names.get(call_id, ""),
                    named=isinstance(name, str) and bool(name),
                    first=previous not in _TOOL_ROLES,
                    last=following not in _TOOL_ROLES,
                )
                segments.append(self.tool(turn))
            elif role in _SYSTEM_ROLES:
                segments.append(self.system(message_text(message.get("content"))))
            else:
                segments.append(self.user(message_text(message.get("content"))))
            previous = role
        segments.append(self.generation_prompt(previous))
        return Prompt(segments, kept, suppressed)

    def leaked_name(self, name: str, call_id: str) -> str:
        """A call name with a piece of the call format stuck to it (the tag_in_name fault)."""
        return name + self.name_tag

    @abstractmethod
    def header(self, system: str | None, tools: Sequence[Mapping[str, Any]]) -> str:
        """Start of the prompt: the first system message (if any) and the tool declarations."""

    @abstractmethod
    def system(self, text: str) -> str:
        """A later system or developer message."""

    @abstractmethod
    def user(self, text: str) -> str:
        """A user message."""

    @abstractmethod
    def assistant(self, turn: AssistantTurn) -> str:
        """An assistant message of the history."""

    @abstractmethod
    def tool(self, turn: ToolTurn) -> str:
        """A tool result."""

    @abstractmethod
    def generation_prompt(self, after: str | None) -> str:
        """What opens the turn the model is asked to generate."""

    @abstractmethod
    def completion(self, reasoning: str, content: str, calls: Sequence[HistoryCall]) -> str:
        """The text the model generates for a turn (counted as completion tokens)."""

    @abstractmethod
    def calls_text(self, calls: Sequence[HistoryCall]) -> str:
        """Tool calls in the family's raw token format, as the model emits them."""

"""What every family chat template shares: the walk over the conversation.

A family template only says how each kind of turn looks in its token format; the walk
decides which reasoning survives (the family's boundary rule and the dialect's reasoning
locations) and emits one segment per turn. Every segment begins and ends on a token
boundary (a special token, a newline or punctuation), so the prompt can be counted segment
by segment and a long conversation costs one cached lookup per earlier turn.
"""

from __future__ import annotations

import json
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

ToolResults = Literal["kept", "dropped", "truncated"]
"""What a host's template makes of tool results: renders them, leaves them out (a template with
no branch for the `tool` role), or cuts each to its first `TRUNCATED_CHARS` characters."""

TRUNCATED_CHARS = 256
"""Length a host that truncates tool results cuts each one to."""

_HTML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"})
"""What Jinja's autoescape (markupsafe) turns each special character into."""


def html_escaped(text: str) -> str:
    """`text` as a Jinja environment with autoescape on renders it."""
    return text.translate(_HTML_ESCAPES)


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
    altered: frozenset[str] = frozenset()
    """Rendering options that changed this prompt: `tool_results`, `escape_html`,
    `reencode_arguments`, `hidden_system` (reasoning has its own count)."""

    @property
    def text(self) -> str:
        """The whole prompt."""
        return "".join(self.segments)


def _verbatim(text: str) -> str:
    return text


def _marked(rendered: str, text: str, altered: set[str]) -> str:
    """`rendered`, noting in `altered` when escaping changed `text`."""
    if rendered != text:
        altered.add("escape_html")
    return rendered


def _reencoded(calls: Sequence[HistoryCall], altered: set[str]) -> list[HistoryCall]:
    """String arguments JSON-encoded once more (`arguments|tojson` on a string), as the old
    Kimi K2 template in llama.cpp renders them: `"{\\"path\\": \\".\\"}"`."""
    reencoded = []
    for call in calls:
        if isinstance(call.arguments, str):
            reencoded.append(HistoryCall(call.id, call.name, json.dumps(call.arguments)))
            altered.add("reencode_arguments")
        else:
            reencoded.append(call)
    return reencoded


def _escaped_turn(
    reasoning: str | None, content: str, calls: Sequence[HistoryCall], altered: set[str]
) -> tuple[str | None, str, list[HistoryCall]]:
    """An assistant turn's reasoning, content and string arguments, HTML-escaped."""
    escaped_calls = [
        HistoryCall(
            c.id,
            c.name,
            _marked(html_escaped(c.arguments), c.arguments, altered)
            if isinstance(c.arguments, str)
            else c.arguments,  # an object goes through `tojson`, which marks it safe
        )
        for c in calls
    ]
    if reasoning:
        reasoning = _marked(html_escaped(reasoning), reasoning, altered)
    return reasoning, _marked(html_escaped(content), content, altered), escaped_calls


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
        tool_results: ToolResults = "kept",
        escape_html: bool = False,
        hidden_system: str | None = None,
        reencode_arguments: bool = False,
    ) -> Prompt:
        """Render `messages` ending with the generation prompt, reading reasoning only from
        `reasoning_in`; `history_reasoning=False` renders no earlier reasoning at all (a
        host that strips it), `last_reasoning_only=True` only the latest assistant turn's.
        A faulty host may also drop or cut tool results (`tool_results`), HTML-escape every
        message's text (`escape_html`), JSON-encode string arguments a second time
        (`reencode_arguments`) or put a system prompt of its own first (`hidden_system`).
        Linear: backward scans for the boundary (and the latest turn),
        one forward pass.
        """
        boundary = (
            last_user_index(messages)
            if self.boundary == "last_user"
            else last_final_answer_index(messages)
        )
        latest = last_assistant_index(messages) if last_reasoning_only else -1
        start, system = 0, None
        altered: set[str] = set()
        escape = html_escaped if escape_html else _verbatim
        if messages and messages[0].get("role") in _SYSTEM_ROLES:
            first = message_text(messages[0].get("content"))
            start, system = 1, _marked(escape(first), first, altered)
        if hidden_system:
            system = hidden_system if system is None else f"{hidden_system}\n\n{system}"
            altered.add("hidden_system")
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
                if reencode_arguments:
                    calls = _reencoded(calls, altered)
                if escape_html:
                    reasoning, content, calls = _escaped_turn(reasoning, content, calls, altered)
                segments.append(self.assistant(AssistantTurn(reasoning, content, calls, previous)))
            elif role in _TOOL_ROLES:
                if tool_results == "dropped":
                    # No branch for the role: the result vanishes, and so does its turn.
                    altered.add("tool_results")
                    continue
                call_id = str(message.get("tool_call_id") or "")
                name = message.get("name")
                following = messages[index + 1].get("role") if index + 1 < count else None
                text = message_text(message.get("content"))
                if tool_results == "truncated" and len(text) > TRUNCATED_CHARS:
                    text = text[:TRUNCATED_CHARS]
                    altered.add("tool_results")
                turn = ToolTurn(
                    text=_marked(escape(text), text, altered),
                    call_id=call_id,
                    name=name if isinstance(name, str) and name else names.get(call_id, ""),
                    named=isinstance(name, str) and bool(name),
                    first=previous not in _TOOL_ROLES,
                    last=following not in _TOOL_ROLES,
                )
                segments.append(self.tool(turn))
            elif role in _SYSTEM_ROLES:
                text = message_text(message.get("content"))
                segments.append(self.system(_marked(escape(text), text, altered)))
            else:
                text = message_text(message.get("content"))
                segments.append(self.user(_marked(escape(text), text, altered)))
            previous = role
        segments.append(self.generation_prompt(previous))
        return Prompt(segments, kept, suppressed, frozenset(altered))

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

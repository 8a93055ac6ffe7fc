"""Agent strategy: what a plausible model does inside someone else's coding agent.

Offered a coding agent's tools (Qwen Code, OpenCode, an SDK app's own read/list/search/shell
functions), it reads what the task points to with those tools, then answers: each file the
user message names is read, a quoted or backticked term (or a TODO-like marker) is searched
for, and a task that names no file gets the working directory listed and its most likely
file read; a look that failed is tried another way (a failed `glob` becomes the
shell's `ls`). At most `MAX_CALLS` calls, one per turn, never the same call twice in a
conversation, never a tool whose required arguments it cannot fill, never a subagent. The
working directory comes from what agents tell their model ("I'm currently working in the
directory: …", "Working directory: …"); paths are made absolute under it.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from traces.sim.strategies.base import Plan, ToolSchemas, backticked, looks_like_error
from traces.sim.strategies.workspace_tools import (
    Job,
    Values,
    arguments,
    job_of,
    joined,
    tools_for,
)
from traces.sim.templates.history import message_text
from traces.sim.transcript import Call, Transcript
from traces.sim.voice import Voice, excerpt

MAX_CALLS = 4
"""Tool calls after the user's message before the model answers, whatever came back."""

_CWD = re.compile(
    r"(?:(?:working|current|project|workspace)\s+(?:in\s+(?:the\s+)?)?"
    r"(?:directory|dir|folder|root)(?:\s+is)?|\bcwd)\s*[:=]?\s*(/[^\s'\"`<>]*)",
    re.IGNORECASE,
)
_FILE = re.compile(r"(?<![\w/.:-])(/?(?:[\w.-]+/)*[\w-]{2,}\.[A-Za-z][A-Za-z0-9]{0,7})(?![\w/])")
_BARE_FILES = re.compile(r"\b(README|Makefile|Dockerfile|LICENSE|CHANGELOG)\b")
_DIR = re.compile(r"(?<![\w/.:-])((?:[\w.-]+/)+)(?=[\s,.;:)'\"`]|$)")
_MARKER = re.compile(r"\b(TODO|FIXME|HACK|XXX)\b")
_TERM_WORDS = 4
_QUOTED = re.compile(r"\"([^\"\n]{1,80})\"|“([^”\n]{1,80})”")

_START = (
    "The user points at {target}. I'll look at it with the {tool} tool before answering.",
    "First I need to see {target}; {tool} will show it.",
    "Let me check {target} with {tool} instead of guessing.",
)
_NEXT = (
    "{previous} gave me {result}. Next: {target}, with {tool}.",
    "Got {result} from {previous}. Now {target} via {tool}.",
)
_DONE = (
    "I've looked at what the task points to ({count} calls); that's enough to answer.",
    "That covers what was asked. Summarising what the tools returned.",
)
_NOTHING = (
    "None of the tools here would help with this; answering directly.",
    "This needs no file or command, so I'll just reply.",
)


@dataclass(frozen=True, slots=True)
class _Action:
    """One look the model means to take: a job on a target."""

    job: Job
    target: str
    """A path for read/list, a term for search."""


def working_directory(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """The absolute working directory the agent told its model about, if any: the last one
    stated (a system prompt's instructions may show an example path before the real one)."""
    found = None
    for message in messages:
        if message.get("role") not in ("system", "developer", "user"):
            continue
        for match in _CWD.finditer(message_text(message.get("content"))):
            path = match.group(1).rstrip(".,;:)").rstrip("/")
            if path:
                found = path
    return found


def named_files(text: str) -> list[str]:
    """Files a message names (`notes.txt`, `src/app.py`, `README`), in order, once each."""
    found = [m.group(1) for m in _FILE.finditer(text)]
    found += [m.group(1) for m in _BARE_FILES.finditer(text)]
    return list(dict.fromkeys(path.rstrip(".") for path in found))


def _search_term(text: str) -> str | None:
    """A term to search for: a few backticked or quoted words that are no path, or a marker
    (a message quoted whole, as OpenCode sends `opencode run`'s, is no term)."""
    for candidate in (backticked(text), *_quoted(text)):
        if (
            candidate
            and len(candidate.split()) <= _TERM_WORDS
            and not _FILE.fullmatch(candidate)
            and "/" not in candidate
        ):
            return candidate
    marker = _MARKER.search(text)
    return marker.group(1) if marker else None


def _quoted(text: str) -> list[str]:
    return [next(g for g in m.groups() if g) for m in _QUOTED.finditer(text)]


def _canonical(name: str, args: Mapping[str, Any]) -> tuple[str, str]:
    return name, json.dumps(args, sort_keys=True, ensure_ascii=False)


class AgentStrategy:
    """Reads what the task points to with a coding agent's own tools, then answers."""

    name = "agent"

    def __init__(self, tools: ToolSchemas, messages: Sequence[Mapping[str, Any]]) -> None:
        """Keep the declared tools and the request's messages (for the working directory
        and every call already made in the conversation)."""
        self.tools = tools
        self.jobs = tools_for(tools)
        self.messages = messages
        self.root = working_directory(messages)

    @staticmethod
    def recognises(tools: ToolSchemas) -> bool:
        """Whether `tools` hold a workspace tool this strategy knows how to use."""
        return any(job_of(name) is not None for name in tools)

    def failed(self, call: Call) -> bool:
        """An agent's tools report failure in words or an `error` object."""
        return looks_like_error(call.result)

    def next_plan(self, transcript: Transcript, voice: Voice) -> Plan:
        """The next look at the workspace, or the answer once there is none left."""
        made = self._made()
        if len(transcript.turns) < MAX_CALLS:
            for action in self._actions(transcript.user_text, made):
                if self._result(action, made) is not None:
                    continue  # done already
                for call in self._calls(action):
                    if _canonical(*call) not in made:  # a way not tried yet
                        return Plan(
                            reasoning=self._why(transcript, action, call[0], voice),
                            calls=(call,),
                        )
        return self._answer(transcript, voice)

    def _result(self, action: _Action, made: Mapping[tuple[str, str], str | None]) -> str | None:
        """What `action` returned if some way of doing it already succeeded, else None."""
        for call in self._calls(action):
            result = made.get(_canonical(*call))
            if result is not None and not looks_like_error(result):
                return result
        return None

    def _made(self) -> dict[tuple[str, str], str | None]:
        """Every call of the conversation (name, canonical arguments) -> its result."""
        results: dict[str, str] = {}
        for message in self.messages:
            if message.get("role") == "tool":
                results[str(message.get("tool_call_id", ""))] = message_text(message.get("content"))
        made: dict[tuple[str, str], str | None] = {}
        for message in self.messages:
            calls = message.get("tool_calls") if message.get("role") == "assistant" else None
            for item in calls if isinstance(calls, list) else ():
                function = item.get("function") if isinstance(item, dict) else None
                if not isinstance(function, dict):
                    continue
                call = Call(
                    str(item.get("id", "")),
                    str(function.get("name", "")),
                    function.get("arguments"),
                )
                made[_canonical(call.name, call.arguments())] = results.get(call.id)
        return made

    def _actions(self, task: str, made: Mapping[tuple[str, str], str | None]) -> list[_Action]:
        """What the task points to, in the order the model looks (recomputed each turn: a
        listing already made decides which file is read next)."""
        files = named_files(task)[:2]
        actions = [_Action("read", path) for path in files]
        term = _search_term(task)
        directories = [m.group(1).rstrip("/") for m in _DIR.finditer(task)]
        directory = directories[0] if directories else "."
        if term is not None:
            actions.append(_Action("search", term))
        if not files:
            listing = _Action("list", directory)
            actions.append(listing)
            listed = self._result(listing, made)
            if listed and term is None:
                candidates = named_files(listed)
                if candidates:
                    readme = [c for c in candidates if "readme" in c.lower()]
                    first = (readme or candidates)[0]
                    base = directory if directory != "." else None
                    actions.append(_Action("read", first if base is None else joined(base, first)))
        return actions

    def _path(self, path: str) -> str:
        return joined(self.root, path) if self.root is not None else path

    def _calls(self, action: _Action) -> list[tuple[str, dict[str, Any]]]:
        """The tool calls that would do `action` with the tools offered, in the order the
        model tries them when one fails (a dedicated tool first, the shell last); empty
        when no tool can do it with sensibly filled arguments."""
        tries: list[tuple[Job, Values]]
        if action.job == "read":
            path = self._path(action.target)
            tries = [
                ("read", Values(path=path, description=f"Read {action.target}")),
                (
                    "shell",
                    Values(command=f"cat {shlex.quote(path)}", description=f"Show {action.target}"),
                ),
            ]
        elif action.job == "list":
            path = self._path(action.target)
            tries = [
                ("list", Values(path=path, description="List the directory")),
                ("glob", Values(path=path, pattern="*", description="List the directory")),
                (
                    "shell",
                    Values(command=f"ls -la {shlex.quote(path)}", description="List the directory"),
                ),
            ]
        else:
            where = self._path(".")
            tries = [
                (
                    "search",
                    Values(
                        path=where, pattern=action.target, description=f"Search for {action.target}"
                    ),
                ),
                (
                    "shell",
                    Values(
                        command=f"grep -rn -- {shlex.quote(action.target)} {shlex.quote(where)}",
                        description=f"Search for {action.target}",
                    ),
                ),
            ]
        calls = []
        for job, values in tries:
            name = self.jobs.get(job)
            filled = arguments(self.tools[name], values) if name is not None else None
            if name is not None and filled is not None:
                calls.append((name, filled))
        return calls

    def _why(self, transcript: Transcript, action: _Action, tool: str, voice: Voice) -> str:
        target = (
            f"`{action.target}`"
            if action.job != "list" or action.target != "."
            else "the working directory"
        )
        if not transcript.turns:
            return voice.pick(_START, target=target, tool=tool)
        last = transcript.turns[-1].calls[-1]
        return voice.pick(
            _NEXT,
            previous=last.name,
            result=excerpt(last.result, 80) or "nothing",
            target=target,
            tool=tool,
        )

    def _answer(self, transcript: Transcript, voice: Voice) -> Plan:
        calls = [call for turn in transcript.turns for call in turn.calls]
        if not calls:
            asked = excerpt(transcript.user_text, 160) or "(an empty message)"
            return Plan(
                reasoning=voice.pick(_NOTHING),
                content=f"You asked: “{asked}”. I needed no tool to answer that.",
            )
        lines = []
        for call in calls:
            what = _described(call)
            status = "failed" if self.failed(call) else "returned"
            lines.append(f"- {what} {status}: {excerpt(call.result, 200)}")
        content = "Here is what I found:\n" + "\n".join(lines)
        return Plan(reasoning=voice.pick(_DONE, count=len(calls)), content=content)


def _described(call: Call) -> str:
    """A call as the answer names it: the tool and its main argument."""
    args = call.arguments()
    main = next((str(value) for value in args.values() if isinstance(value, str)), "")
    return f"{call.name} {excerpt(main, 80)}".strip()

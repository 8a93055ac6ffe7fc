"""Which run a proxied request belongs to: conversations told apart by their messages alone.

A client sends each turn the whole conversation again: the previous request's messages, the
answer it got, then what it adds (tool results, the user's next message). So a request whose
messages start with an open run's last request plus that request's answer continues that
run. Clients rewrite what they send back, so messages are compared in a canonical form that
forgets what they change: reasoning fields and think blocks (stripped before sending back),
content as a string or a list of text parts, whitespace around it, tool-call ids (some
clients make their own), and the message's `name`. Arguments are compared as JSON values.

Kept apart: requests that declare other tools (a title or summary side call carries none,
while the agent carries its own), and conversations that merely start alike (two sessions
of one prompt): an open run is continued only by a request that extends what it was
answered. The very same request again, after a failed or cancelled one, is the client's
retry. A client may also name the run itself (`X-Traces-Run`): requests naming the same
value are one run, whatever their messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from traces.model import canonical_json
from traces.normalize import read_reasoning

Canon = tuple[Any, ...]
"""A message in the form compared across requests."""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        pieces: list[str] = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    pieces.append(text)
                elif isinstance(part.get("image_url"), dict):
                    pieces.append(str(part["image_url"].get("url", "")))
            elif isinstance(part, str):
                pieces.append(part)
        return "".join(pieces).strip()
    return "" if content is None else canonical_json(content)


def _arguments(raw: Any) -> str:
    if isinstance(raw, str):
        try:
            return canonical_json(json.loads(raw))
        except ValueError:
            return raw.strip()
    return canonical_json(raw)


def canon(message: Any) -> Canon:
    """The canonical form of one chat message (see the module's docstring)."""
    if not isinstance(message, dict):
        return ("?", canonical_json(message))
    role = str(message.get("role", ""))
    if role != "assistant":
        return (role, _text(message.get("content")))
    content = read_reasoning(message)[2]
    calls: list[tuple[str, str]] = []
    raw_calls = message.get("tool_calls")
    for call in raw_calls if isinstance(raw_calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            calls.append((str(function.get("name", "")), _arguments(function.get("arguments"))))
    return (role, _text(content), tuple(calls))


def canon_all(messages: list[Any]) -> list[Canon]:
    """The canonical form of each message of a request."""
    return [canon(m) for m in messages]


def tool_names(params: dict[str, Any]) -> frozenset[str]:
    """The names of the function tools a request declares."""
    tools = params.get("tools")
    names: set[str] = set()
    for tool in tools if isinstance(tools, list) else []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict):
            names.add(str(function.get("name", "")))
    return frozenset(names)


@dataclass
class Thread:
    """An open run as the grouping sees it."""

    run_id: str
    tools: frozenset[str]
    explicit: str | None = None
    """The `X-Traces-Run` value that names it, when a client named it."""
    sent: list[Canon] = field(default_factory=list)
    """The canonical messages of its latest request."""
    answer: Canon | None = None
    """That request's answer, once it came."""
    in_flight: int = 0
    failed: bool = False
    """Its latest request ended without an answer (an error, a cancel)."""
    last_seen: float = 0.0


def _prefix_hashes(messages: list[Canon], tools: frozenset[str]) -> list[int]:
    """`result[n]` stands for the first n messages and the tools (equal prefixes, equal
    values; a collision is ruled out by comparing the messages themselves)."""
    value = hash(tools)
    hashes = [value]
    for message in messages:
        value = hash((value, message))
        hashes.append(value)
    return hashes


class Conversations:
    """The open runs, and which of them each new request belongs to.

    Each run that a request may continue (answered, or failed, and not named by a header) is
    indexed by the messages such a request starts with: (their count, the hash of them and
    the tools). Placing a request looks each count up once, so it costs what the request
    holds, however many runs are open.
    """

    def __init__(self) -> None:
        """No run open yet."""
        self.threads: dict[str, Thread] = {}
        self._named: dict[str, str] = {}
        self._index: dict[tuple[int, int], dict[str, Thread]] = {}
        self._sizes: dict[int, int] = {}
        """How many indexed runs expect each count of messages."""
        self._keys: dict[str, tuple[int, int]] = {}

    def place(
        self,
        messages: list[Canon],
        tools: frozenset[str],
        explicit: str | None,
        now: float,
    ) -> tuple[Thread | None, bool]:
        """(the open run the request continues, whether it is a retry of its latest request);
        (None, False) when it starts a run of its own (`open` it then)."""
        if explicit is not None:
            run_id = self._named.get(explicit)
            thread = self.threads.get(run_id) if run_id is not None else None
            if thread is None:
                return None, False
            return thread, thread.failed and messages == thread.sent
        hashes = _prefix_hashes(messages, tools)
        # The longest prefix first: a request extending several runs continues the one it
        # extends furthest (the latest of equals).
        for size in sorted((n for n in self._sizes if n <= len(messages)), reverse=True):
            found = self._index.get((size, hashes[size]))
            if not found:
                continue
            matching = [t for t in found.values() if messages[:size] == _expected(t)]
            if matching:
                best = max(matching, key=lambda t: t.last_seen)
                return best, best.answer is None and size == len(messages)
        return None, False

    def open(self, run_id: str, tools: frozenset[str], explicit: str | None, now: float) -> Thread:
        """A new run starts with this request."""
        thread = Thread(run_id=run_id, tools=tools, explicit=explicit, last_seen=now)
        self.threads[run_id] = thread
        if explicit is not None:
            self._named[explicit] = run_id
        return thread

    def sending(self, thread: Thread, messages: list[Canon], now: float) -> None:
        """A request of the run leaves for the upstream."""
        self._unindex(thread)
        thread.sent = messages
        thread.answer = None
        thread.failed = False
        thread.in_flight += 1
        thread.last_seen = now

    def answered(self, thread: Thread, answer: dict[str, Any] | None, now: float) -> None:
        """The request's answer came (`answer` the assistant message; None: none came)."""
        thread.in_flight = max(0, thread.in_flight - 1)
        thread.answer = canon(answer) if answer is not None else None
        thread.failed = answer is None
        thread.last_seen = now
        if not thread.in_flight and thread.explicit is None and thread.run_id in self.threads:
            expected = _expected(thread)
            key = (len(expected), _prefix_hashes(expected, thread.tools)[-1])
            self._index.setdefault(key, {})[thread.run_id] = thread
            self._sizes[key[0]] = self._sizes.get(key[0], 0) + 1
            self._keys[thread.run_id] = key

    def idle(self, now: float, idle_s: float) -> list[Thread]:
        """Close and return the runs nothing was sent to for `idle_s` seconds."""
        gone = [t for t in self.threads.values() if not t.in_flight and now - t.last_seen >= idle_s]
        for thread in gone:
            self.close(thread)
        return gone

    def close(self, thread: Thread) -> None:
        """Forget a run (it ended)."""
        self._unindex(thread)
        self.threads.pop(thread.run_id, None)
        if thread.explicit is not None and self._named.get(thread.explicit) == thread.run_id:
            del self._named[thread.explicit]

    def _unindex(self, thread: Thread) -> None:
        key = self._keys.pop(thread.run_id, None)
        if key is None:
            return
        bucket = self._index[key]
        del bucket[thread.run_id]
        if not bucket:
            del self._index[key]
        left = self._sizes[key[0]] - 1
        if left:
            self._sizes[key[0]] = left
        else:
            del self._sizes[key[0]]


def _expected(thread: Thread) -> list[Canon]:
    """What a request continuing the run starts with: its latest request, and the answer
    when one came."""
    return thread.sent if thread.answer is None else [*thread.sent, thread.answer]

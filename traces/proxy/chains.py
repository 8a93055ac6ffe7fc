"""Which run a text-completion or Responses API request continues (chat completions are
grouped by `conversations`).

A text completion continues the open run whose latest prompt followed by the text it got
is where its own prompt starts (a client that appends to a growing prompt). A Responses API
request continues the run whose latest response it names as `previous_response_id`, or else
the run whose latest input items followed by the output items it got are where its own
input starts (a client that sends the whole conversation again each turn, as Codex CLI
does). Items are compared as conversations compares messages, forgetting what clients
rewrite: item ids and status, content as a string or a list of text parts. Anything else
starts a run of its own. Runs are kept apart per upstream and per path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from traces.model import canonical_json
from traces.proxy.paths import Kind

Item = tuple[Any, ...]
"""A Responses API input or output item in the form compared across requests."""


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text of its list of parts."""
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str)).strip()
    return canonical_json(content)


def item(value: Any) -> Item:
    """The compared form of one Responses API item."""
    if isinstance(value, str):
        return ("user", value.strip())
    if not isinstance(value, dict):
        return ("?", canonical_json(value))
    if "role" in value and value.get("type", "message") == "message":
        return (str(value["role"]), content_text(value.get("content")))
    kept = {k: v for k, v in value.items() if k not in ("id", "status")}
    return ("item", canonical_json(kept))


def input_items(body: dict[str, Any]) -> list[Item]:
    """The compared form of a Responses API request's `input`."""
    given = body.get("input")
    if isinstance(given, list):
        return [item(v) for v in given]
    return [] if given is None else [item(given)]


def output_items(response: dict[str, Any] | None) -> list[Item]:
    """The compared form of a response's `output` items."""
    output = response.get("output") if response is not None else None
    return [item(v) for v in output] if isinstance(output, list) else []


@dataclass
class _Link:
    run_id: str
    scope: tuple[Kind, str]
    expected_text: str | None = None
    """Completions: the latest prompt and the text it got."""
    expected_items: list[Item] = field(default_factory=list)
    """Responses: the latest input items and the output items they got."""
    response_id: str | None = None


class Chains:
    """The open text-completion and Responses API runs, and which one a request continues."""

    def __init__(self) -> None:
        """No run open yet."""
        self._links: dict[str, _Link] = {}
        self._by_response: dict[str, str] = {}

    def place(self, kind: Kind, upstream: str, body: dict[str, Any]) -> str | None:
        """The id of the open run the request continues (None: it starts its own)."""
        scope = (kind, upstream)
        if kind == "responses":
            previous = body.get("previous_response_id")
            if isinstance(previous, str) and previous in self._by_response:
                return self._by_response[previous]
            items = input_items(body)
            best: _Link | None = None
            for link in self._links.values():
                size = len(link.expected_items)
                if (
                    link.scope == scope
                    and size
                    and items[:size] == link.expected_items
                    and (best is None or size > len(best.expected_items))
                ):
                    best = link
            return best.run_id if best is not None else None
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            return None
        found: _Link | None = None
        for link in self._links.values():
            text = link.expected_text
            if (
                link.scope == scope
                and text
                and prompt.startswith(text)
                and (found is None or len(text) > len(found.expected_text or ""))
            ):
                found = link
        return found.run_id if found is not None else None

    def answered(
        self,
        run_id: str,
        kind: Kind,
        upstream: str,
        body: dict[str, Any],
        text: str | None,
        response: dict[str, Any] | None,
        response_id: str | None,
    ) -> None:
        """The run's latest request got its answer (`text`, and for a Responses API request
        the final `response` object and its id; None when none came)."""
        link = self._links.get(run_id)
        if link is None:
            link = self._links[run_id] = _Link(run_id=run_id, scope=(kind, upstream))
        if kind == "responses":
            link.expected_items = [*input_items(body), *output_items(response)]
            if link.response_id is not None:
                self._by_response.pop(link.response_id, None)
            link.response_id = response_id
            if response_id is not None:
                self._by_response[response_id] = run_id
        else:
            prompt = body.get("prompt")
            link.expected_text = prompt + (text or "") if isinstance(prompt, str) else None

    def forget(self, run_id: str) -> None:
        """The run ended."""
        link = self._links.pop(run_id, None)
        if link is not None and link.response_id is not None:
            self._by_response.pop(link.response_id, None)

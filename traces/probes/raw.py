"""The raw variant of a probe: its conversation rendered client-side, sent to `/completions`.

A host's chat endpoint runs its own template and parser; its raw completions endpoint runs
neither. Rendering the same conversation with the model's official chat template and
sending the text raw isolates the host's template from the model: equal `prompt_tokens`
mean the host renders what the official template renders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from traces.chat_template import load_template, render
from traces.exchange import Exchange
from traces.probes.catalogue import Wire

Renderer = Callable[[list[dict[str, Any]], list[dict[str, Any]] | None], str]
"""(messages, tools) -> the prompt text, generation prompt included."""

NOT_SERVED_STATUSES = frozenset({404, 405})
"""How a host says it has no `/completions` route."""


def load_renderer(path: Path) -> Renderer:
    """A renderer for the chat template at `path` (a `.jinja` file, a `tokenizer_config.json`
    or a model folder); raises the template's one-line `TemplateLoadError`."""
    template = load_template(path)

    def render_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        return render(template, messages, tools, add_generation_prompt=True)

    return render_prompt


def raw_wire(chat: Wire) -> Wire:
    """The wire of the raw rendering: the target's ids and arguments, reasoning in
    `reasoning_content`, the field official (Hugging Face) templates read."""
    return Wire(reasoning="reasoning_content", ids=chat.ids, arguments=chat.arguments)


def not_served(exchange: Exchange) -> bool:
    """Whether the host answered that it does not serve `/completions` at all."""
    return exchange.http_status in NOT_SERVED_STATUSES

"""Naming the client behind a proxied request from its `User-Agent`."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_SDKS = frozenset({"openai", "anthropic"})
"""Products whose first word names an SDK, not the agent: the second word says which one."""


def client_name(user_agent: str | None) -> str | None:
    """A short name for the client: the first product of its `User-Agent`, lower-case
    (`QwenCode/0.2.1 (linux; x64)` → `qwencode`, `codex_cli_rs/0.40` → `codex_cli_rs`),
    with the language for an SDK's own (`OpenAI/Python 1.99` → `openai-python`); None when
    there is none."""
    if not user_agent:
        return None
    first = user_agent.strip().split(" ", 1)[0]
    product, _, version = first.partition("/")
    name = _TOKEN.match(product)
    if name is None:
        return None
    found = name.group(0).lower()
    flavour = _TOKEN.match(version)
    if found in _SDKS and flavour is not None and not flavour.group(0)[0].isdigit():
        found = f"{found}-{flavour.group(0).lower()}"
    return found

"""The Jinja environment chat templates are written for: Hugging Face transformers' own.

`transformers` compiles every chat template in an `ImmutableSandboxedEnvironment` with
`trim_blocks` and `lstrip_blocks`, the `loopcontrols` extension (`break`, `continue`), a
`tojson` filter that is plain `json.dumps` (not HTML-escaped, non-ASCII kept) and the globals
`raise_exception` and `strftime_now`. Templates are tested against exactly that, so any other
setting renders a different prompt. Two additions for templates llama.cpp ships: its
`from_json` filter, and (only on request) a mutable sandbox for templates that call
`list.append`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

Clock = Callable[[], datetime]
"""What `strftime_now` reads the time from (tests pin it)."""


class TemplateRaised(jinja2.exceptions.TemplateError):
    """A template's own `raise_exception(message)`: it refuses the conversation on purpose."""


def raise_exception(message: str) -> NoReturn:
    """The `raise_exception` global: templates call it to refuse a conversation."""
    raise TemplateRaised(message)


def tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """The `tojson` filter as transformers defines it: `json.dumps` with its defaults.

    Jinja's built-in `tojson` escapes `<`, `>`, `&` and `'` for HTML and sorts keys; a
    prompt must carry the characters themselves, in the order the caller gave.
    """
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def from_json(text: str) -> Any:
    """llama.cpp's `from_json` filter (its own Jinja engine has it; transformers does not).

    Templates llama.cpp authored (DeepSeek V3.2's) parse string arguments with it; without
    it they would not compile at all.
    """
    return json.loads(text)


def hf_environment(*, mutable: bool = False, clock: Clock = datetime.now) -> SandboxedEnvironment:
    """A fresh environment with transformers' chat-template settings.

    `mutable=True` uses the plain sandbox, which lets a template call `list.append`:
    llama.cpp's engine allows it and some of its templates rely on it, transformers refuses.
    """
    kind = SandboxedEnvironment if mutable else ImmutableSandboxedEnvironment
    env = kind(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.filters["from_json"] = from_json
    env.globals["raise_exception"] = raise_exception

    def strftime_now(format: str) -> str:
        return clock().strftime(format)

    env.globals["strftime_now"] = strftime_now
    return env

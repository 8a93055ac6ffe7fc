"""A compiled chat template and how it renders a conversation, as transformers does.

`render` passes what `apply_chat_template` passes: the messages, the tools (None when there
are none), `documents=None`, `add_generation_prompt`, the tokenizer's special tokens
(`bos_token`, `eos_token`, ...) and any extra keyword (`enable_thinking`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from types import TracebackType
from typing import Any

import jinja2

from traces.chat_template.environment import Clock, TemplateRaised, hf_environment
from traces.chat_template.errors import TemplateLoadError, TemplateRenderError


@dataclass(frozen=True, eq=False)
class ChatTemplate:
    """Jinja source of a chat template, where it came from, and the tokenizer's special
    tokens it is rendered with. Compiled once, on creation (a syntax error fails there)."""

    source: str
    origin: str = "<template>"
    """File (and field) the source came from; named in every error."""
    special_tokens: Mapping[str, Any] = field(default_factory=dict)
    """`bos_token`, `eos_token`, ... as plain strings, passed to every render."""
    allow_mutation: bool = True
    """Re-render in a mutable sandbox when the template calls `list.append` (llama.cpp's
    engine allows it; transformers would refuse the template)."""
    clock: Clock = datetime.now
    """Time source of `strftime_now`."""

    def __post_init__(self) -> None:
        """Compile now, so a broken template is reported when it is loaded."""
        _ = self._compiled

    @cached_property
    def _compiled(self) -> jinja2.Template:
        return self._compile(mutable=False)

    @cached_property
    def _compiled_mutable(self) -> jinja2.Template:
        return self._compile(mutable=True)

    def _compile(self, *, mutable: bool) -> jinja2.Template:
        env = hf_environment(mutable=mutable, clock=self.clock)
        try:
            # Compiled with the origin as file name, so tracebacks name the template's line.
            code = env.compile(self.source, name=self.origin, filename=self.origin)
        except jinja2.TemplateSyntaxError as err:
            raise TemplateLoadError(
                f"{self.origin}, line {err.lineno}: template syntax error: {err.message}"
            ) from None
        return env.template_class.from_code(env, code, env.make_globals(None))

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        add_generation_prompt: bool = True,
        **kwargs: Any,
    ) -> str:
        """The prompt text for `messages`; raises `TemplateRenderError` naming the line."""
        variables = {
            **self.special_tokens,
            **kwargs,
            "messages": list(messages),
            "tools": list(tools) if tools else None,
            "documents": None,
            "add_generation_prompt": add_generation_prompt,
        }
        try:
            return self._compiled.render(variables)
        except jinja2.exceptions.SecurityError as err:
            if not self.allow_mutation:
                raise self._error(err) from None
        except Exception as err:  # a template is code: anything it raises is its error
            raise self._error(err) from None
        try:
            return self._compiled_mutable.render(variables)
        except Exception as err:
            raise self._error(err) from None

    def _error(self, err: Exception) -> TemplateRenderError:
        message = err.message if isinstance(err, jinja2.TemplateError) else str(err)
        return TemplateRenderError(
            self.origin,
            _template_line(err.__traceback__, self.origin),
            type(err).__name__,
            message or "",
            raised=isinstance(err, TemplateRaised),
        )


def _template_line(tb: TracebackType | None, origin: str) -> int | None:
    """Line of the innermost template frame: Jinja rewrites tracebacks so that frames of
    the template carry its file name and its own line numbers."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == origin:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render(
    template: ChatTemplate,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    **kwargs: Any,
) -> str:
    """`template.render(...)`, as a function."""
    return template.render(messages, tools, add_generation_prompt=add_generation_prompt, **kwargs)

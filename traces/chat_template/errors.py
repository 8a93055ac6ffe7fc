"""Errors of chat-template loading, rendering and tokenizer loading, each one line long."""

from __future__ import annotations

from traces.errors import TracesError


class TemplateLoadError(TracesError):
    """A chat template that cannot be read or compiled; names the file and the field or line."""


class TokenizerLoadError(TracesError):
    """A tokenizer file that cannot be read; names the file."""


class TemplateRenderError(TracesError):
    """A template that failed on a conversation: its own `raise_exception`, or a Jinja or
    Python error inside it (a string where it wanted a mapping, an undefined attribute)."""

    def __init__(
        self, origin: str, line: int | None, kind: str, message: str, *, raised: bool
    ) -> None:
        """`kind` is the exception class (`TypeError`, `UndefinedError`, ...); `raised` is
        true when the template itself called `raise_exception(message)`."""
        where = f"{origin}, line {line}" if line is not None else origin
        what = "template raised" if raised else kind
        super().__init__(f"{where}: {what}: {' '.join(message.split())}")
        self.origin = origin
        self.line = line
        self.kind = kind
        self.detail = message
        self.raised = raised

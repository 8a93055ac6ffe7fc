"""Text as the one line a user sees: an error message, a log's reason, a preview.

Every message that quotes something from outside (a host's body, an exception, a line of a
log) goes through here, so none spreads over several lines or runs on for pages. The
analyzer's terminal variant (`analyzer.output.one_line`) adds escaping on top.
"""

from __future__ import annotations

ERROR_CHARS = 300
"""How long an error message kept with a step may be."""


def one_line(text: str, limit: int | None = ERROR_CHARS) -> str:
    """`text` flattened to one line (whitespace runs, newlines included, become one space),
    cut to at most `limit` characters with `…` when longer; None keeps it whole."""
    flat = " ".join(text.split())
    if limit is None or len(flat) <= limit:
        return flat
    return flat[: limit - 1] + "…"


def exception_line(exc: BaseException) -> str:
    """An exception as the one line a user sees: the first line of its message (DuckDB's
    next lines quote the query with a caret), or its type's name when it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__

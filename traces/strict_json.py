"""Parsing JSON that came from outside (a host's response, a log line) strictly, as RFC 8259
defines it.

Python's `json` is lenient where it matters here: it accepts `NaN`, `Infinity` and
`-Infinity`, turns `1e999` into `inf`, and raises `RecursionError` (not `ValueError`) on
arrays nested a few thousand deep. Such values would then be written back as `NaN`, which
DuckDB's JSON columns refuse, or crash whoever reads them. Everything foreign is parsed here,
so one `ValueError` says the text is not JSON every parser accepts.
"""

from __future__ import annotations

import json
import math
from typing import Any


class StrictJSONError(ValueError):
    """Text that is not strict JSON: why, and where when the parser knows."""

    def __init__(self, msg: str, pos: int | None = None, column: int | None = None) -> None:
        """`msg` says what is wrong; `pos` the character offset and `column` the column on
        its line, when known."""
        super().__init__(msg if column is None else f"{msg} (column {column})")
        self.msg = msg
        self.pos = pos


def _constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise StrictJSONError(f"number {text[:40]} is beyond the range of a double")
    return value


_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_float)


def loads(text: str | bytes) -> Any:
    """Parse `text` (bytes in any encoding `json.loads` detects); `StrictJSONError` when it is
    not strict JSON, `UnicodeDecodeError` when bytes are not text."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode(json.detect_encoding(text), "surrogatepass")
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise StrictJSONError(exc.msg, exc.pos, exc.colno) from None
    except RecursionError:
        raise StrictJSONError("nested too deep to parse") from None


def ends_early(exc: ValueError, text: str) -> bool:
    """Whether a parse error is at the very end of `text`: the document was cut short (a
    connection that closed mid-body), not malformed."""
    if not isinstance(exc, StrictJSONError) or exc.pos is None:
        return False
    # An unterminated string is reported where it opened, but only the end of input ends it.
    return exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")

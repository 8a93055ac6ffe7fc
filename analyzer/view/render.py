"""The viewer's HTML: Jinja templates shipped in the package, autoescaped, so every value
from the store reaches the page as text, never as markup."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined

from analyzer.output import printable


def _json(value: Any) -> str:
    """A JSON value indented for reading; a string that holds JSON is shown parsed."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return f"{value:,}" if isinstance(value, int) else str(value)


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _clock(at: float | None) -> str:
    """A time.time() as the local time of day."""
    return "–" if at is None else datetime.fromtimestamp(at).strftime("%H:%M:%S")


def _text(value: Any) -> str:
    """A recorded value as text: control characters (but tabs and newlines) made visible,
    so a terminal escape or a NUL in model output is seen, not swallowed."""
    return "–" if value is None else printable(str(value))


def _segment(value: Any) -> str:
    """A value as one path segment of a URL."""
    return quote(str(value), safe="")


def query(params: dict[str, Any], **changes: Any) -> str:
    """`?…` for the page's parameters with `changes` applied (None or "" drops one)."""
    merged = {**params, **changes}
    kept = [(k, str(v)) for k, v in merged.items() if v is not None and v != ""]
    return "?" + urlencode(kept) if kept else "?"


def environment() -> Environment:
    """The template environment: autoescaping on for every template, undefined names an
    error (a typo must not render as nothing)."""
    env = Environment(
        loader=PackageLoader("analyzer.view", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters: dict[str, Callable[..., str]] = {
        "pretty_json": _json,
        "ms": _ms,
        "num": _num,
        "when": _when,
        "clock": _clock,
        "text": _text,
        "seg": _segment,
    }
    env.filters.update(filters)
    env.globals["query"] = query
    return env

"""Keeping secrets a log may carry (keys, auth headers, cookies) out of the database.

Logs written by proxies and SDK wrappers sometimes keep `api_key`, `extra_headers:
{"Authorization": …}` or similar next to the request body. Fields named like a credential
are dropped, and string values shaped like one (`Bearer …`, `sk-…`) are replaced, anywhere in
the request body except where the names are data: the messages, and the tool schemas (a
tool may well take a parameter called `token`). Response headers are never taken whole:
only `traces.normalize.KEPT_HEADERS` are.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"
"""What a secret-shaped value is replaced with."""

_SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "token",
        "bearer",
        "password",
        "passwd",
        "secret",
        "credentials",
        "credential",
    }
)
_SECRET_SUFFIXES = ("api_key", "apikey", "_token", "_secret", "_password", "_credentials")
_SECRET_VALUE = re.compile(
    r"^\s*(?:bearer|basic)\s+\S{8,}|\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{16,}|\bAIza[0-9A-Za-z_\-]{30,}",
    re.IGNORECASE,
)
_DATA_FIELDS = frozenset({"messages", "tools", "tool_choice", "functions", "response_format"})
"""Request fields whose keys and strings are the conversation's data, never credentials."""


def is_secret_name(name: str) -> bool:
    """Whether a field or header name is one a credential travels under."""
    key = name.lower().replace("-", "_")
    return key in _SECRET_NAMES or key.endswith(_SECRET_SUFFIXES)


def redact_request(body: dict[str, Any]) -> dict[str, Any]:
    """`body` without credential fields or values (a copy only when something was removed)."""
    cleaned: dict[str, Any] | None = None
    for key, value in body.items():
        if key in _DATA_FIELDS:
            continue
        if is_secret_name(key):
            cleaned = cleaned if cleaned is not None else dict(body)
            del cleaned[key]
            continue
        scrubbed = _scrub(value)
        if scrubbed is not value:
            cleaned = cleaned if cleaned is not None else dict(body)
            cleaned[key] = scrubbed
    return body if cleaned is None else cleaned


def _scrub(value: Any) -> Any:
    """`value` with nested credentials removed; the same object when there were none."""
    if isinstance(value, str):
        return REDACTED if _SECRET_VALUE.search(value) else value
    if isinstance(value, dict):
        out: dict[str, Any] | None = None
        for key, item in value.items():
            if isinstance(key, str) and is_secret_name(key):
                out = out if out is not None else dict(value)
                del out[key]
                continue
            scrubbed = _scrub(item)
            if scrubbed is not item:
                out = out if out is not None else dict(value)
                out[key] = scrubbed
        return value if out is None else out
    if isinstance(value, list):
        items = [_scrub(item) for item in value]
        if any(new is not old for new, old in zip(items, value, strict=True)):
            return items
        return value
    return value
